"""``make bench``: run every benchmark, print a table, write JSON under benchmarks/results/."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_cores,
    bench_deid,
    bench_dicomweb,
    bench_echo,
    bench_index,
    bench_log,
    bench_memory,
    bench_planner,
    bench_query,
    bench_receive,
    bench_small,
    bench_transcode,
    bench_transfer,
    bench_viewer,
    bench_webserver,
    bench_worklist,
)

log = logging.getLogger("benchmarks")

MODULES = {
    "echo": bench_echo,
    "receive": bench_receive,
    "cores": bench_cores,
    "transfer": bench_transfer,
    "small": bench_small,
    "memory": bench_memory,
    "query": bench_query,
    "dicomweb": bench_dicomweb,
    "webserver": bench_webserver,
    "viewer": bench_viewer,
    "deid": bench_deid,
    "transcode": bench_transcode,
    "worklist": bench_worklist,
    "log": bench_log,
    "index": bench_index,
    "planner": bench_planner,
}
"""Every benchmark, in the order ``make bench`` runs them (``python -m benchmarks NAME...``
runs some)."""


def main() -> int:
    only = set(sys.argv[1:])
    unknown = only - set(MODULES)
    if unknown:
        raise SystemExit(f"no benchmark {sorted(unknown)}: choose among {list(MODULES)}")
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name, module in MODULES.items():
        if only and name not in only:
            continue
        try:
            got = module.run()
        except Exception as exc:  # one broken benchmark must not lose the others' rows
            log.exception("benchmark %s failed", name)
            failed.append(f"{name}: {exc!r}")
            continue
        for row in [got] if isinstance(got, dict) else got:
            row.setdefault("peer", module.PEER)
            results.append(row)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = {
        "when": stamp,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": results,
        "failed": failed,
    }
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"{'benchmark':48} {'dicomlab':>12} {'peer':>12} {'ratio':>8}")
    for r in results:
        print(
            f"{r['name']:48} {r['dicomlab']:>12.4g} {r['dcmtk']:>12.4g} "
            f"{r['ratio']:>8.2f}  {r['unit']}\n{'':48}   peer: {r.get('peer', '')}"
        )
    for line in failed:
        print(f"FAILED {line}")
    print(f"written {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
