"""Shared pieces of the benchmarks: synthetic sets (cached), timing, peers."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dicomlab as dl
from dicomlab.peers import StoreSCP, peer_env, require_binary

CACHE = Path(os.environ.get("DICOMLAB_BENCH_DATA", Path(__file__).parent / ".data"))
REPEATS = int(os.environ.get("DICOMLAB_BENCH_REPEATS", "5"))
"""Rounds per row (each contender once a round; the median is reported). Five: on the
reference machine, with three, ratios of the same code swung by a third between runs
(C-MOVE 0.69 and 1.09 in two runs ten minutes apart)."""

STORESCU = "storescu -aet BENCH -aec <ae> +sd +r 127.0.0.1 <port> <folder>"
"""The sender every receive row uses (``TCP_NODELAY=1``, as :func:`peer_env` sets)."""
FAST_SCP = ("+B",)
"""storescp's fastest like-for-like setting: bit-preserving, written as received, as
LocalPACS does (without it storescp parses and re-encodes every data set)."""


def dataset(name: str, n_instances: int, image_size: int) -> Path:
    """A cached folder of ``n_instances`` synthetic CT instances of ``image_size``²."""
    folder = CACHE / f"{name}-{n_instances}-{image_size}"
    marker = folder.with_name(folder.name + ".complete")  # outside: storescu +sd scans all
    if marker.exists():
        return folder
    per_series = 100
    written = 0
    for ds in dl.synth.generate(  # (a study holds up to per_series: ask for enough of them)
        n_instances,
        seed=99,
        today=date(2026, 1, 1),
        image_size=image_size,
        max_series=1,
        max_instances=per_series,
        modalities=("CT",),
    ):
        if written >= n_instances:
            break
        path = folder / f"{written:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        written += 1
    if written != n_instances:
        raise RuntimeError(f"{folder}: {written} instances made, {n_instances} wanted")
    marker.write_text(str(written))
    return folder


@contextmanager
def workspace(name: str, n_default: int, image_size: int, env: str) -> Iterator[Set]:
    """The synthetic set ``name`` (``env`` overrides its size) and a scratch folder beside it."""
    n = int(os.environ.get(env, str(n_default)))
    data = dataset(name, n, image_size)
    with tempfile.TemporaryDirectory(dir=data.parent) as tmp:
        yield Set(data, count(data), Path(tmp))


@dataclass(frozen=True)
class Set:
    data: Path
    total: int
    work: Path


def large() -> AbstractContextManager[Set]:
    """1,000 CT instances of 512x512 16-bit (``DICOMLAB_BENCH_N``) and a scratch folder."""
    return workspace("ct", 1000, 512, "DICOMLAB_BENCH_N")


def count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.dcm"))


def storescu(port: int, folder: Path, called: str) -> float:
    """Seconds for dcmtk storescu to send every file in ``folder`` on one association."""
    exe = require_binary("storescu")
    t0 = time.perf_counter()
    subprocess.run(
        [exe, "-aet", "BENCH", "-aec", called, "+sd", "+r", "127.0.0.1", str(port), str(folder)],
        check=True,
        env=peer_env(),
        capture_output=True,
    )
    return time.perf_counter() - t0


def storescu_into_storescp(work: Path, data: Path, extra: tuple[str, ...] = FAST_SCP) -> float:
    """Seconds for storescu -> a fresh storescp under ``work`` (the dcmtk baseline;
    ``extra``: its options, :data:`FAST_SCP` unless told)."""
    with StoreSCP(work / "scp", extra=extra) as scp:
        s = storescu(scp.port, data, scp.ae_title)
    shutil.rmtree(work / "scp")
    return s


def storescu_into_localpacs(
    work: Path, data: Path, total: int, fsync: bool, deidentify: dl.Deidentifier | None = None
) -> float:
    """Seconds for storescu -> a fresh LocalPACS under ``work`` (checked: nothing lost)."""
    root = work / "local"
    with dl.LocalPACS(root, port=0, allow_unknown="all", fsync=fsync, deidentify=deidentify) as lp:
        s = storescu(lp.port, data, lp.ae_title)
        assert len(lp.instances()) == total, "LocalPACS lost instances"
    shutil.rmtree(root)
    return s


def median_of(fn: Callable[[], float], repeats: int = REPEATS) -> tuple[float, list[float]]:
    """The median of ``repeats`` timed runs (each after :func:`settle`), and the runs."""
    runs = []
    for _ in range(repeats):
        settle()
        runs.append(fn())
    return statistics.median(runs), runs


def interleaved(
    fns: Mapping[str, Callable[[], float]], repeats: int = REPEATS
) -> dict[str, tuple[float, list[float]]]:
    """:func:`median_of` for several contenders, run in rounds (one run of each per round,
    each after :func:`settle`): the state of a shared machine (page cache, writeback,
    other load) drifts over minutes, and one contender measured entirely before the
    other would take all the drift on one side.

    Each round starts one contender further on. Every run deletes what it wrote, and
    on this machine's ext4 (mounted without a journal) creating a file within a minute
    or more of many deletions in the same block group is slower: the allocator skips
    each recently deleted inode (``recently_deleted`` in fs/ext4/ialloc.c; 98 -> 250 us
    per 4 KB file after 8,000 deletions, measured here). In a fixed order the later
    contenders of every round paid for the earlier ones' deletions."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            settle()
            runs[name].append(fns[name]())
    return {name: (statistics.median(r), r) for name, r in runs.items()}


def settle() -> None:
    """Write back dirty pages before a timed run, so that no run pays for the files an
    earlier one wrote (hundreds of MB per run here)."""
    os.sync()


def scratch(fallback: Path) -> Path:
    """Where findscu writes its responses: a tmpfs if there is one (on this machine's
    ext4, creating thousands of small files swung findscu's time by a factor of five)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="dicomlab-findscu-", dir=shm))
    return fallback


def findscu(where: Path, args: list[str], expected: int) -> float:
    """Seconds for ``findscu -X -od <where>/rsp -aet BENCH <args>``, each response written
    to a file (checked: ``expected`` of them)."""
    out = where / "rsp"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run(
        [require_binary("findscu"), "-X", "-od", str(out), "-aet", "BENCH", *args],
        check=True,
        env=peer_env(),
        capture_output=True,
    )
    s = time.perf_counter() - t0
    assert sum(1 for _ in out.iterdir()) == expected
    shutil.rmtree(out)
    return s


def split(folder: Path, parts: int) -> list[Path]:
    """``folder``'s files in ``parts`` folders beside it (hard links, cached), for as many
    senders at once, each with its own instances."""
    out = folder.with_name(f"{folder.name}-split{parts}")
    folders = [out / str(i) for i in range(parts)]
    files = sorted(folder.glob("*.dcm"))
    _linked(out, [(p, folders[i % parts] / p.name) for i, p in enumerate(files)])
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    return folders


def _linked(out: Path, links: list[tuple[Path, Path]]) -> None:
    """Hard links ``(file, link)`` under ``out``, made once (a marker beside ``out`` says
    they are all there; a half-made ``out`` is made again)."""
    marker = out.with_name(out.name + ".complete")
    if marker.exists():
        return
    shutil.rmtree(out, ignore_errors=True)
    for path, link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)
    marker.write_text(str(len(links)))


def storescu_many(port: int, folders: list[Path], called: str) -> float:
    """Seconds for one dcmtk storescu per folder, all at once, to send every file."""
    exe = require_binary("storescu")
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [exe, "-aet", f"BENCH{i}", "-aec", called, "+sd", "+r", "127.0.0.1", str(port), str(f)],
            env=peer_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, f in enumerate(folders)
    ]
    errors = [p.communicate()[1] for p in procs]
    s = time.perf_counter() - t0
    failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
    assert not failed, failed[0][-500:]
    return s


def command_line(argv: list[str]) -> str:
    """A peer's command line as a row names it (paths and ports shortened)."""
    shown = []
    for arg in argv:
        if "/" in arg:
            arg = f"<{Path(arg).name or 'dir'}>" if not arg.startswith("/usr") else Path(arg).name
        elif arg.isdigit() and int(arg) > 1024:
            arg = "<port>"
        shown.append(arg)
    return " ".join(shown)


def subset(folder: Path, n: int) -> Path:
    """The first ``n`` files of ``folder`` in a folder beside it (hard links, cached)."""
    out = folder.with_name(f"{folder.name}-first{n}")
    _linked(out, [(p, out / p.name) for p in sorted(folder.glob("*.dcm"))[:n]])
    out.mkdir(parents=True, exist_ok=True)
    return out


def rate_row(
    name: str,
    unit: str,
    total: int,
    ours: tuple[float, list[float]],
    theirs: tuple[float, list[float]],
    peer: str,
) -> dict[str, Any]:
    """A throughput row: ``total`` instances in ``ours`` and ``theirs`` (median seconds,
    and the runs), ratio = our rate / theirs."""
    (s, runs), (base_s, base_runs) = ours, theirs
    return {
        "name": name,
        "unit": unit,
        "dicomlab": total / s,
        "dcmtk": total / base_s,
        "ratio": base_s / s,
        "runs_s": runs,
        "dcmtk_runs_s": base_runs,
        "instances": total,
        "peer": peer,
    }
