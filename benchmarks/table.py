"""The README's speed table from one ``make bench`` run: ``python -m benchmarks.table
benchmarks/results/bench-<stamp>.json`` prints it as Markdown (one row per benchmark
row: ours, the peer's, the ratio, and the peer's command line)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(payload: dict[str, Any]) -> str:
    lines = [
        f"One run, {payload['when']} (Python {payload['python']}, {payload['machine']}):",
        "",
        "| benchmark | dicomlab | peer | ratio | unit | compared with |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in payload["results"]:
        unit = str(r["unit"]).split(" (")[0]
        peer = str(r.get("peer", "")).replace("|", "\\|")
        lines.append(
            f"| {r['name']} | {_figure(r['dicomlab'])} | {_figure(r['dcmtk'])} | "
            f"{r['ratio']:.2f} | {unit} | `{peer}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m benchmarks.table benchmarks/results/bench-<stamp>.json")
    sys.stdout.write(table(json.loads(Path(args[0]).read_text())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
