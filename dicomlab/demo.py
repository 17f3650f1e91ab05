"""The main job, ``make demo`` / ``dicomlab demo``: what dicomlab does, end to end.

A LocalPACS seeded with synthetic studies (no patient data), echoes with their
diagnoses, a query with a date preset, a retrieve by C-GET and by C-MOVE into a
second LocalPACS (the researcher's own node), then the network log: a summary per
peer and service and a throughput/latency figure saved as PNG. Steps are reported
through ``say``; everything runs on loopback and stops before returning.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from dicomlab import plot, synth
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.front import echo, find, retrieve
from dicomlab.log import configure, flush, read_associations, read_log, summary
from dicomlab.peers import StoreSCP, free_port
from dicomlab.server.localpacs import LocalPACS

__all__ = ["run_demo"]


def run_demo(out: str | Path, say: Callable[[str], None], n_studies: int = 20) -> int:
    """Run the demo writing into ``out``; returns a process exit code."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("pacs", "mine", "logs"):
        shutil.rmtree(out / old, ignore_errors=True)  # a re-run starts clean
    configure(folder=out / "logs", interval_s=2)
    try:
        return _run(out, say, n_studies)
    finally:
        flush()
        configure()


def _run(out: Path, say: Callable[[str], None], n_studies: int) -> int:
    say(f"1. writing {n_studies} synthetic studies (seed 0) to {out / 'studies'}")
    shutil.rmtree(out / "studies", ignore_errors=True)
    manifest = synth.write_studies(out / "studies", n_studies=n_studies, seed=0, today=date.today())
    say(
        f"   {manifest.StudyInstanceUID.nunique()} studies, {len(manifest)} instances, "
        f"modalities {sorted(manifest.Modality.unique())}"
    )
    mine = LocalPACS(out / "mine", ae_title="MINE", port=0)
    book = NodeBook()
    with mine:
        book.add(Node("mine", ae_title="MINE", host="127.0.0.1", port=mine.port))
        with LocalPACS(out / "pacs", ae_title="DEMOPACS", port=0, book=book) as pacs:
            pacs.policy.trusted_senders.add("MINE")
            n = len(pacs.import_files(out / "studies"))
            say(f"2. LocalPACS {pacs.ae_title} on 127.0.0.1:{pacs.port} holds {n} instances")
            say(f"   LocalPACS {mine.ae_title} on 127.0.0.1:{mine.port} is ours, empty")
            node = pacs.node
            r = echo(node, calling_ae="MINE")
            say(f"3. echo: {r}")
            ok = r.ok
            closed = Node("closed", ae_title="NOBODY", port=free_port(), timeout=3)
            say(f"   echo a closed port, to see a diagnosis: {echo(closed, calling_ae='MINE')}")
            week = find(node, Query.studies(date="last7days"), calling_ae="MINE")
            every = find(node, Query.studies(), calling_ae="MINE")
            say(
                f"4. C-FIND: {len(week)} studies in the last 7 days, {len(every)} in all; "
                f"complete={every.attrs['complete']}"
            )
            if week.empty:
                week = every.head(3)
            got = retrieve(
                node, week.head(3), into=mine, method="get", progress=False, calling_ae="MINE"
            )
            moved = retrieve(
                node,
                every.iloc[3:6],
                into=mine,
                method="move",
                progress=False,
                calling_ae="MINE",
            )
            outcome = pd.concat([_table(got), _table(moved)], ignore_index=True)
            say(
                f"5. retrieved {int(outcome.received_instances.sum())} instances of "
                f"{len(outcome)} studies by C-GET and C-MOVE; all complete: "
                f"{bool(outcome.complete.all())}"
            )
            ok = ok and bool(outcome.complete.all())
            again = _table(
                retrieve(node, week.head(3), into=mine, progress=False, calling_ae="MINE")
            )
            say(f"   the same retrieve again skips {int(again.skipped.sum())} complete studies")
    if shutil.which("storescp"):
        with tempfile.TemporaryDirectory() as tmp, StoreSCP(tmp) as scp:
            r = echo(scp.node, calling_ae="MINE")
            say(f"6. echo dcmtk storescp: {r}")
            ok = ok and r.ok
    else:
        say("6. dcmtk is not installed: skipping the echo of a real storescp (make peers)")
    ok = _report(out, say) and ok
    say(
        f"done. Log and figure under {out}. Next: the notebooks (make lab)"
        if ok
        else "FAILED: see above"
    )
    return 0 if ok else 1


def _report(out: Path, say: Callable[[str], None]) -> bool:
    flush()
    ops = read_log(folder=out / "logs")
    assocs = read_associations(folder=out / "logs")
    say(
        f"7. the network log ({out / 'logs'}): {len(assocs)} associations, "
        f"{len(ops)} operations (both roles)"
    )
    shown = ["local_ae", "peer", "role", "service", "operations", "success_rate", "median_s"]
    table = summary(ops)[shown]
    for line in table.to_string(index=False).splitlines():
        say("   " + line)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot.throughput(ops, freq="200ms", ax=left)
    plot.latency(ops, ax=right)
    png = out / "network-log.png"
    fig.savefig(png, dpi=110)
    say(f"8. figure saved: {png}")
    return not ops.empty and png.exists()


def _table(result: object) -> pd.DataFrame:
    assert isinstance(result, pd.DataFrame)  # wait=True returns the outcome table
    return result
