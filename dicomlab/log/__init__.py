"""Network log: capture of associations and DIMSE operations, Parquet writer and reader.

>>> import dicomlab as dl
>>> ops = dl.read_log(since="2026-01-01")          # doctest: +SKIP
>>> dl.log.summary(ops)                            # doctest: +SKIP
"""

from __future__ import annotations

from dicomlab.core.logschema import SERVICES
from dicomlab.log.compact import compact
from dicomlab.log.reader import association, read_associations, read_log, summary
from dicomlab.log.synthetic import write_synthetic_log
from dicomlab.log.writer import configure, folder


def flush() -> int:
    """Write the buffered log rows now (they are also written every few seconds)."""
    from dicomlab.log.writer import writer

    return writer().flush()


__all__ = [
    "SERVICES",
    "association",
    "compact",
    "configure",
    "flush",
    "folder",
    "read_associations",
    "read_log",
    "summary",
    "write_synthetic_log",
]
