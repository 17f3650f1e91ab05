"""A synthetic, multi-day network log (deterministic, seeded) for teaching and analysis demos.

It has the exact schema of the real log and the usual shape of a research PACS
connection: busy working hours, quiet nights, a few peers, C-FIND bursts before
retrieves, large C-STOREs, and the failures people meet (out of resources, a move
destination the PACS does not know, rejected associations, timeouts).
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dicomlab.core.status import status_category
from dicomlab.log.writer import write_rows

__all__ = ["write_synthetic_log"]

_PEERS = [
    # AE title, host, port, median latency scale, failure rate
    ("HOSPITAL_PACS", "10.20.0.15", 104, 1.0, 0.02),
    ("RESEARCH_ORTHANC", "10.20.3.7", 4242, 0.6, 0.01),
    ("SLOW_ARCHIVE", "10.31.8.2", 11112, 3.0, 0.08),
]
_CT = "1.2.840.10008.5.1.4.1.1.2"
_EXPLICIT = "1.2.840.10008.1.2.1"


def write_synthetic_log(
    folder: str | os.PathLike[str],
    days: int = 14,
    seed: int = 0,
    end: datetime | None = None,
) -> int:
    """Write ``days`` of synthetic log under ``folder``; returns the number of operations."""
    rng = random.Random(seed)
    root = Path(folder)
    last = (end or datetime(2026, 1, 31, tzinfo=UTC)).astimezone(UTC)
    start = (last - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    assocs: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    t = start
    while t < last:
        hour = t.hour
        busy = 8 <= hour < 18 and t.weekday() < 5
        rate = 12 if busy else 1.5  # associations per hour
        t += timedelta(hours=rng.expovariate(rate))
        if t >= last:
            break
        peer = rng.choices(_PEERS, weights=(5, 3, 1))[0]
        _association(rng, t, peer, assocs, ops)
    write_rows(root, "associations", assocs)
    write_rows(root, "operations", ops)
    return len(ops)


def _association(
    rng: random.Random,
    t: datetime,
    peer: tuple[str, str, int, float, float],
    assocs: list[dict[str, Any]],
    ops: list[dict[str, Any]],
) -> None:
    ae, host, port, scale, fail = peer
    aid = uuid.UUID(int=rng.getrandbits(128)).hex
    job = uuid.UUID(int=rng.getrandbits(128)).hex if rng.random() < 0.8 else None
    row: dict[str, Any] = {
        "association_id": aid,
        "role": "SCU",
        "local_ae": "DICOMLAB",
        "peer_ae": ae,
        "peer_host": host,
        "peer_port": port,
        "tls": False,
        "requested_at": t,
        "max_pdu": 16384,
        "bytes_sent": 0,
        "bytes_received": 0,
        "job_id": job,
    }
    assocs.append(row)
    if rng.random() < fail / 2:
        row.update(
            outcome="rejected",
            reject_reason="the called AE title is not recognised",
            ended_at=t + timedelta(milliseconds=rng.uniform(5, 40)),
        )
        return
    now = t + timedelta(milliseconds=rng.lognormvariate(2.5, 0.4) * scale)
    row.update(established_at=now, contexts_proposed=3, contexts_accepted=3)
    kind = rng.choices(["find", "move", "get", "store"], weights=(4, 3, 2, 1))[0]
    n = {"find": rng.randint(1, 20), "move": 1, "get": 1, "store": rng.randint(20, 300)}[kind]
    service = {"find": "C-FIND", "move": "C-MOVE", "get": "C-GET", "store": "C-STORE"}[kind]
    aborted = False
    for i in range(n):
        op: dict[str, Any] = {
            "association_id": aid,
            "role": "SCU",
            "service": service,
            "message_id": i + 1,
            "sop_class_uid": _CT if kind == "store" else None,
            "transfer_syntax": _EXPLICIT,
            "started_at": now,
            "job_id": job,
        }
        if kind == "store":
            size = int(rng.gauss(526_000, 20_000))
            seconds = size / (rng.lognormvariate(3.8, 0.3) * 1e6 / scale)
            op.update(bytes=size, sop_instance_uid=f"2.25.{rng.getrandbits(100)}")
            row["bytes_sent"] += size
        elif kind == "find":
            seconds = rng.lognormvariate(-3.0, 0.5) * scale
            op.update(n_matches=rng.choice([0, 1, 1, 1, 2, 5, 40]))
            op["study_instance_uid"] = f"2.25.{rng.getrandbits(100)}"
        else:
            instances = rng.randint(50, 800)
            seconds = instances * rng.lognormvariate(-5.5, 0.3) * scale
            op.update(study_instance_uid=f"2.25.{rng.getrandbits(100)}", n_completed=instances)
            op.update(n_failed=0, n_warning=0)
            row["bytes_received"] += instances * 526_000
        status = 0x0000
        if rng.random() < fail:
            status = rng.choice([0xA700, 0xC000, 0xA801 if kind == "move" else 0xA700, 0xA900])
            if kind in ("move", "get"):
                op.update(n_failed=op.get("n_completed", 0), n_completed=0)
        now += timedelta(seconds=seconds)
        op.update(
            ended_at=now,
            duration_s=seconds,
            status=status,
            status_category=status_category(status),
        )
        ops.append(op)
        if status == 0xA700 and rng.random() < 0.5:
            aborted = True
            break
    end = now + timedelta(milliseconds=rng.uniform(1, 10))
    row.update(ended_at=end, outcome="aborted" if aborted else "released")
    row["bytes_received"] += 200 * n
