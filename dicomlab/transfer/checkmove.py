"""``dl.check_move``: can the PACS reach us back? The commonest C-MOVE failure, checked
before a real retrieve meets it.

The PACS is asked to C-MOVE one small instance it holds (found by C-FIND: the study
with the fewest instances among the recent ones, its smallest series, its first
instance, one the LocalPACS does not hold yet) to our LocalPACS. What happened says
which side is missing what: the PACS does not know our AE title (0xA801), it knows it
but could not connect to the address it has (nothing connected, the move failed),
it reported success but nothing arrived (it sent it elsewhere), or it works, and
from which address it connected. The instance moved stays in the LocalPACS.

When the move fails and nothing connected, the same instance is asked for once more,
for an AE title the PACS cannot know: a PACS that answers that one 0xA801 but ours
otherwise knows our AE title and cannot reach the address it has; one that answers
both alike (Orthanc answers 0xC000 to both, and says which in its own log only) does
not tell over DICOM, and the diagnosis names both fixes.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core.call import Call
from dicomlab.core.models import MODELS
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.errors import DicomlabError
from dicomlab.net import dimse
from dicomlab.net import find as _find
from dicomlab.net.association import open_association
from dicomlab.server.localpacs import LocalPACS
from dicomlab.transfer.getmove import GetMove
from dicomlab.transfer.retrieve import Request, run_retrieve

__all__ = ["MoveCheck", "check_move"]

Cause = Literal[
    "ok",
    "unknown-destination",
    "cannot-connect",
    "unknown-or-unreachable",
    "nothing-arrived",
    "empty",
    "no-query",
    "failed",
]

_WINDOWS = ("last7days", "last365days", None)
"""Study dates searched for a small instance, nearest first (None: every study)."""
_MOVE_UNKNOWN = 0xA801


@dataclass(frozen=True, slots=True)
class MoveCheck:
    """What :func:`check_move` found.

    ``ok``: the instance arrived by C-MOVE. ``cause``: ``ok``, ``unknown-destination``
    (the PACS does not know our AE title), ``cannot-connect`` (it knows it, but could
    not connect to the address it has), ``unknown-or-unreachable`` (one of the two: the
    PACS answers an AE title it cannot know the same way), ``nothing-arrived`` (it said
    success, nothing came), ``empty`` (it shows nothing to move: cannot check), ``no-query`` (our
    C-FIND failed: see ``detail``) or ``failed``. ``detail``: what to register where.
    ``our_ae``, ``our_host``, ``our_port``: what the PACS should have for us.
    ``seen_from``: the address the PACS connected from, when it did."""

    ok: bool
    cause: Cause
    detail: str
    node: Node
    our_ae: str
    our_host: str
    our_port: int
    seen_from: str | None
    elapsed_s: float

    def __str__(self) -> str:
        verdict = "C-MOVE works" if self.ok else "C-MOVE does not work"
        return f"{self.node.name} ({self.node.address}): {verdict}: {self.detail}"


def _route_address(host: str) -> str:
    """Our address on the route to ``host`` (what the PACS should connect to); no packet
    is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 104))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _smallest_first(df: pd.DataFrame, count: str, uid: str) -> list[str]:
    """The UIDs of ``df`` by their instance count, smallest first (unknown last)."""
    n = pd.to_numeric(df[count], errors="coerce") if count in df.columns else None
    ordered = df.assign(n=n).sort_values("n", na_position="last") if n is not None else df
    return [str(u) for u in ordered[uid]]


def _candidates(call: Call, local: LocalPACS) -> pd.DataFrame | None:
    """One image row of a small instance the PACS holds and the LocalPACS does not."""
    quiet = call.quiet()
    for window in _WINDOWS:
        query = Query.studies(date=window, return_keys=["NumberOfStudyRelatedInstances"])
        studies = _find.find(quiet, query, warn=False)
        for study in _smallest_first(studies, "NumberOfStudyRelatedInstances", "StudyInstanceUID"):
            query = Query.series(
                StudyInstanceUID=study, return_keys=["NumberOfSeriesRelatedInstances"]
            )
            series = _find.find(quiet, query, warn=False)
            for uid in _smallest_first(
                series, "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"
            ):
                query = Query.instances(StudyInstanceUID=study, SeriesInstanceUID=uid)
                images = _find.find(quiet, query, warn=False)
                for sop in images.SOPInstanceUID:
                    if not local.archive.index.contains(str(sop)):
                        one: pd.DataFrame = images[images.SOPInstanceUID == sop].head(1)
                        return one
    return None


def check_move(call: Call, local: LocalPACS) -> MoveCheck:
    """Ask ``call.node`` to C-MOVE one small instance to ``local`` and say what happened."""
    node, t0 = call.node, time.monotonic()
    our_ae, our_port = local.ae_title, local.port
    wildcard = local.host in ("0.0.0.0", "")
    our_host = _route_address(node.host) if wildcard else local.host

    def result(ok: bool, cause: Cause, detail: str, seen: str | None = None) -> MoveCheck:
        return MoveCheck(
            ok, cause, detail, node, our_ae, our_host, our_port, seen, time.monotonic() - t0
        )

    register = f"AE title {our_ae!r}, host {our_host}, port {our_port}"
    try:
        row = _candidates(call, local)
    except DicomlabError as exc:
        return result(False, "no-query", f"cannot look for an instance to move: {exc}")
    if row is None:
        return result(
            False,
            "empty",
            f"cannot check: {node.ae_title} shows no instance (that is not already here) to "
            f"C-MOVE; to be reachable it needs our {register}",
        )
    since = time.time()
    request = Request(row, local, "move", "image", 1, True)
    out = run_retrieve(call.quiet(), request, fetchers=GetMove, find=_find_any)
    assert isinstance(out, pd.DataFrame)
    outcome = out.iloc[0]
    callers = [c for c in local.callers(since) if c.ae_title != call.ours]
    seen = callers[0].address if callers else None
    status = None if pd.isna(outcome.status) else int(outcome.status)
    if bool(outcome.complete):
        listening = (
            ""
            if not local.host.startswith("127.") or node.host.startswith("127.")
            else f" (but we listen on {local.host} only: a PACS on another host cannot reach it)"
        )
        return result(
            True,
            "ok",
            f"{node.ae_title} moved an instance to {our_ae} on port {our_port}, connecting "
            f"from {seen or 'an address not recorded'}{listening}",
            seen,
        )
    if status == _MOVE_UNKNOWN:
        return result(
            False,
            "unknown-destination",
            f"{node.ae_title} does not know our AE title {our_ae!r} (0xA801, move destination "
            f"unknown): register {register} on it",
        )
    if not callers and status is not None and _probe(call, row) == status:
        return result(
            False,
            "unknown-or-unreachable",
            f"{node.ae_title} did not connect to us ({outcome.status_text}), and answers a "
            f"C-MOVE to an AE title it cannot know the same way, so DICOM does not say "
            f"whether it lacks our AE title or has a wrong address for it: register (or "
            f"correct) {register} on it{_listening(local, node)}",
        )
    if not callers:
        where = _listening(local, node)
        ended = outcome.status_text if status is not None else outcome.error
        return result(
            False,
            "cannot-connect",
            f"{node.ae_title} knows {our_ae!r} but did not connect to us ({ended}): check "
            f"the host and port it has for {our_ae!r}: they should be host {our_host}, port "
            f"{our_port}{where}",
        )
    if status is not None and status in (0x0000, 0xB000):
        return result(
            False,
            "nothing-arrived",
            f"{node.ae_title} connected from {seen} and reported success, but the instance "
            f"did not arrive: {outcome.error}",
            seen,
        )
    return result(False, "failed", f"the C-MOVE failed: {outcome.error}", seen)


def _find_any(call: Call, query: Query) -> pd.DataFrame:
    return _find.find(call, query, warn=False)


def _listening(local: LocalPACS, node: Node) -> str:
    if local.host.startswith("127.") and not node.host.startswith("127."):
        return f"; we listen on {local.host} only: start the LocalPACS with host='0.0.0.0'"
    return ""


def _probe(call: Call, row: pd.DataFrame) -> int | None:
    """The final status the PACS gives a C-MOVE of the instance ``row`` to an AE title
    it cannot know (``None``: no final status)."""
    destination = "DLNOSUCH" + secrets.token_hex(4).upper()
    first = row.iloc[0]
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = str(first.StudyInstanceUID)
    ds.SeriesInstanceUID = str(first.SeriesInstanceUID)
    ds.SOPInstanceUID = str(first.SOPInstanceUID)
    model = MODELS["move"]["study"]
    try:
        with open_association(call.node, [model], calling_ae=call.ours) as opened:
            reply = dimse.retrieve(
                opened.assoc, call.node, "C-MOVE", model, ds, _ignore, destination
            )
    except DicomlabError:
        return None
    return reply.status


def _ignore(*_: object) -> None:
    return None
