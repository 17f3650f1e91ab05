"""``dl.commit``: ask a PACS whether it has taken responsibility for instances (storage
commitment, Push Model), apart from any sending."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset

from dicomlab.core import commitment
from dicomlab.core.call import Call
from dicomlab.core.indexrow import is_valid_uid
from dicomlab.core.outcomes import COMMITTED
from dicomlab.errors import ValidationError
from dicomlab.net import commit as commit_scu
from dicomlab.net.association import open_association
from dicomlab.server.localpacs import ensure_listener
from dicomlab.transfer.store import sources

__all__ = ["commit", "references"]


def references(what: Any) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) pairs from a DataFrame with those columns
    (``local.instances()``, a ``dl.store`` outcome, an image-level ``dl.find``), pairs,
    files or folders (their headers read), or data sets."""
    if isinstance(what, pd.DataFrame):
        missing = {"SOPClassUID", "SOPInstanceUID"} - set(what.columns)
        if missing:
            raise ValidationError(f"a DataFrame to commit needs the column(s) {sorted(missing)}")
        columns = zip(what.SOPClassUID, what.SOPInstanceUID, strict=True)
        pairs = [(str(c), str(i)) for c, i in columns]
    elif isinstance(what, str | os.PathLike | Dataset):
        pairs = [(s.sop_class, s.sop_instance) for s in sources(what) if s.error is None]
    else:
        items = list(what)
        if items and all(isinstance(p, tuple) and len(p) == 2 for p in items):
            pairs = [(str(c), str(i)) for c, i in items]
        else:
            pairs = [(s.sop_class, s.sop_instance) for s in sources(items) if s.error is None]
    seen: set[str] = set()
    for sop_class, sop_instance in pairs:
        if not is_valid_uid(sop_class) or not is_valid_uid(sop_instance):
            raise ValidationError(
                f"({sop_class!r}, {sop_instance!r}) is not a (SOP Class UID, SOP Instance UID) pair"
            )
        if sop_instance in seen:
            raise ValidationError(f"SOP Instance UID {sop_instance!r} is given twice")
        seen.add(sop_instance)
    if not pairs:
        raise ValidationError("nothing to commit: no instance given")
    return pairs


def commit(call: Call, pairs: list[tuple[str, str]], timeout: float) -> pd.DataFrame:
    """One storage commitment request for ``pairs`` (checked by :func:`references`);
    one row per instance."""
    node = call.node
    ensure_listener(call.book)  # where a report on a new association arrives
    with open_association(node, [commitment.PUSH_MODEL], calling_ae=call.ours) as op:
        got = commit_scu.request(op.assoc, node, pairs, timeout)
    rows = []
    for sop_class, sop_instance in pairs:
        row = COMMITTED.row(node=node.name, SOPClassUID=sop_class, SOPInstanceUID=sop_instance)
        rows.append({**row, **got.verdict(sop_instance)})
    df = COMMITTED.frame(rows)
    df.attrs.update(complete=got.report is not None, error=got.error)
    return df
