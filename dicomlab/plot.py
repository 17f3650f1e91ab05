"""Plots of the network log: a DataFrame in, a matplotlib Axes out (nothing shown or saved)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["latency", "sequence", "throughput", "timeline"]

_OUTCOME_COLOURS = {
    "released": "tab:green",
    "aborted": "tab:orange",
    "rejected": "tab:red",
    "failed": "tab:gray",
}


class _ShownFigure(Figure):
    """A Figure that shows itself as a PNG wherever IPython displays it (JupyterLab,
    classic Notebook, Voila, nbclient), with no ``%matplotlib`` magic and no pyplot:
    the inline backend only registers its formatter when pyplot is imported."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        FigureCanvasAgg(self).print_png(buf)  # type: ignore[no-untyped-call]
        return buf.getvalue()


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 3.5)) -> Axes:
    if ax is not None:
        return ax
    fig = _ShownFigure(figsize=size)  # not pyplot: no global state, no window
    return fig.add_subplot()


def _need(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs the columns {missing} (from dl.read_log())")


def _time_axis(ax: Axes) -> None:
    """Concise date labels, as many as the axes' width holds (about 1.4 per inch): a
    narrow panel of a day-wide axis gets 4 labels, not 10 that run into each other."""
    inches = ax.get_position().width * ax.get_figure().get_figwidth()  # type: ignore[union-attr]
    locator = mdates.AutoDateLocator(  # type: ignore[no-untyped-call]
        minticks=2, maxticks=max(3, int(inches * 1.4))
    )
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def throughput(df: pd.DataFrame, freq: str = "1min", ax: Axes | None = None) -> Axes:
    """MB/s moved by C-STORE operations (both roles) per ``freq`` interval."""
    _need(df, ["started_at", "bytes", "service"], "throughput")
    ax = _axes(ax)
    stores = df[df["service"] == "C-STORE"]
    if stores.empty:
        ax.set_title("Throughput (no C-STORE operations)")
        return ax
    per = stores.set_index("started_at")["bytes"].astype("Float64").fillna(0).resample(freq).sum()
    seconds = pd.Timedelta(freq).total_seconds()
    ax.plot(per.index, per.to_numpy(dtype=float) / 1e6 / seconds, drawstyle="steps-post")
    ax.set_ylabel("MB/s")
    ax.set_title(f"C-STORE throughput per {freq}")
    _time_axis(ax)
    return ax


def latency(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Distribution of operation durations per service (box plot, log scale)."""
    _need(df, ["service", "duration_s"], "latency")
    ax = _axes(ax)
    groups = [(s, g["duration_s"].dropna().astype(float)) for s, g in df.groupby("service")]
    groups = [(s, v[v > 0]) for s, v in groups if (v > 0).any()]
    if not groups:
        ax.set_title("Latency (no operations)")
        return ax
    ax.boxplot([v.to_numpy() for _, v in groups], showfliers=True)
    ax.set_xticks(range(1, len(groups) + 1), [f"{s}\n(n={len(v)})" for s, v in groups])
    ax.set_yscale("log")
    ax.set_ylabel("seconds")
    ax.set_title("Operation latency by service")
    return ax


def timeline(associations: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """One bar per association from request to end, coloured by outcome."""
    _need(associations, ["requested_at", "ended_at", "outcome"], "timeline")
    ax = _axes(ax, (8, 4))
    df = associations.sort_values("requested_at").reset_index(drop=True)
    start = mdates.date2num(  # type: ignore[no-untyped-call]
        df["requested_at"].dt.tz_convert(None)
    )
    end_times = df["ended_at"].fillna(df["requested_at"])
    end = mdates.date2num(  # type: ignore[no-untyped-call]
        end_times.dt.tz_convert(None)
    )
    width = np.maximum(end - start, 1e-9)
    colours = [_OUTCOME_COLOURS.get(str(o), "tab:blue") for o in df["outcome"]]
    rows = np.arange(len(df))
    ax.barh(rows, width, left=start, color=colours, height=0.8)
    # A bar a few ms wide on a day-wide axis is invisible: mark every start too.
    ax.scatter(start, rows, c=colours, marker="|", s=60, linewidths=1.5, zorder=3)
    _time_axis(ax)
    ax.set_yticks([])
    ax.set_xlabel("time (UTC)")
    n = len(df)
    ax.set_title(f"{n} association{'s' if n != 1 else ''}")
    present = [o for o in _OUTCOME_COLOURS if o in set(df["outcome"].astype(str))]
    handles = [Patch(color=_OUTCOME_COLOURS[o], label=o) for o in present]
    if handles:  # legend colours are the outcomes' own (empty bars gave the default blue)
        ax.legend(handles=handles, loc="upper left", fontsize="small", ncols=4)
    return ax


def sequence(story: dict[str, Any], ax: Axes | None = None, max_operations: int = 12) -> Axes:
    """Sequence diagram of one association (from ``dl.log.association(id)``), for teaching.

    Two lifelines (requestor left, acceptor right): A-ASSOCIATE-RQ/AC (or RJ), each
    DIMSE request and its final response with status, then A-RELEASE or A-ABORT.
    """
    a = story["association"]
    ops: pd.DataFrame = story["operations"]
    scu_left = a["role"] == "SCU"
    us = a.get("local_ae") or "us"
    them = a.get("peer_ae") or a.get("peer_host") or "peer"
    left, right = (us, them) if scu_left else (them, us)
    steps: list[tuple[str, bool]] = [("A-ASSOCIATE-RQ", True)]
    if a.get("outcome") == "rejected":
        steps.append((f"A-ASSOCIATE-RJ: {a.get('reject_reason') or ''}", False))
    elif a.get("established_at") is not None and not pd.isna(a.get("established_at")):
        n_ok = a.get("contexts_accepted")
        steps.append((f"A-ASSOCIATE-AC ({n_ok} contexts accepted)", False))
        shown = ops.head(max_operations)
        for op in shown.to_dict("records"):
            # the requestor is the SCU of its own requests (C-GET sub-operations reverse it)
            forward = (op["role"] == "SCU") == scu_left
            code = op["status"]
            status = "" if pd.isna(code) else f" 0x{int(code):04X} {op['status_category']}"
            steps.append((f"{op['service']}-RQ", forward))
            steps.append((f"{op['service']}-RSP{status}", not forward))
        if len(ops) > len(shown):
            steps.append((f"... {len(ops) - len(shown)} more operations", True))
        if a.get("outcome") == "released":
            steps += [("A-RELEASE-RQ", True), ("A-RELEASE-RP", False)]
        elif a.get("outcome") == "aborted":
            steps.append(("A-ABORT", True))
    ax = _axes(ax, (7, 0.45 * len(steps) + 1.5))
    n = len(steps)
    for x, name in ((0, left), (1, right)):
        ax.plot([x, x], [0, n + 0.5], color="black", lw=1)
        ax.text(x, n + 0.8, str(name), ha="center", va="bottom", fontweight="bold")
    for i, (label, to_right) in enumerate(steps):
        y = n - i - 0.2
        x0, x1 = (0, 1) if to_right else (1, 0)
        ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops={"arrowstyle": "->", "lw": 1.2})
        ax.text(0.5, y + 0.08, label, ha="center", va="bottom", fontsize="small")
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylim(-0.5, n + 1.6)
    ax.axis("off")
    ax.set_title(f"Association {str(a['association_id'])[:8]} ({a.get('outcome')})")
    return ax
