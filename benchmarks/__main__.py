"""``make bench``: run every benchmark, print a table, write JSON under benchmarks/results/."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import (
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


def main() -> int:
    only = set(sys.argv[1:])
    results: list[dict[str, Any]] = []
    if not only or "echo" in only:
        results.append(bench_echo.run())
    if not only or "receive" in only:
        results.extend(bench_receive.run())
    if not only or "transfer" in only:
        results.extend(bench_transfer.run())
    if not only or "small" in only:
        results.extend(bench_small.run())
    if not only or "memory" in only:
        results.extend(bench_memory.run())
    if not only or "query" in only:
        results.append(bench_query.run())
    if not only or "dicomweb" in only:
        results.extend(bench_dicomweb.run())
    if not only or "webserver" in only:
        results.extend(bench_webserver.run())
    if not only or "viewer" in only:
        results.extend(bench_viewer.run())
    if not only or "deid" in only:
        results.extend(bench_deid.run())
    if not only or "transcode" in only:
        results.extend(bench_transcode.run())
    if not only or "worklist" in only:
        results.extend(bench_worklist.run())
    if not only or "log" in only:
        results.extend(bench_log.run())
    if not only or "index" in only:
        results.extend(bench_index.run())
    if not only or "planner" in only:
        results.extend(bench_planner.run())
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = {
        "when": stamp,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": results,
    }
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"{'benchmark':48} {'dicomlab':>12} {'dcmtk':>12} {'ratio':>8}")
    for r in results:
        print(
            f"{r['name']:48} {r['dicomlab']:>12.4g} {r['dcmtk']:>12.4g} "
            f"{r['ratio']:>8.2f}  {r['unit']}"
        )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
