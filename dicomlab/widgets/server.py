"""ServerPanel: start/stop a LocalPACS, its address, live counters and recent activity."""

from __future__ import annotations

import html
import threading
import weakref

import ipywidgets as w
import pandas as pd

import dicomlab as dl
from dicomlab.widgets.base import Panel, explain, frame_html

__all__ = ["ServerPanel"]

_LIVE: weakref.WeakValueDictionary[int, ServerPanel] = weakref.WeakValueDictionary()


class ServerPanel(Panel):
    """Start/stop ``local``, see its AE title and port, counters and the last operations.

    Counters refresh every ``refresh_s`` seconds while the panel lives; re-running
    the cell that made a panel for the same LocalPACS closes the previous panel, so
    no refresh thread is left behind.
    """

    css = "dl-server"

    def __init__(self, local: dl.LocalPACS, refresh_s: float = 2.0) -> None:
        super().__init__()
        self.local = local
        previous = _LIVE.get(id(local))
        if previous is not None and previous.local is local:
            previous.close()
        _LIVE[id(local)] = self
        self.address = w.HTML("").add_class("dl-server-address")
        self.counters = w.HTML("").add_class("dl-server-counters")
        self.activity = w.HTML("").add_class("dl-server-activity")
        self.start_button = w.Button(description="Start", icon="play").add_class("dl-server-start")
        self.stop_button = w.Button(description="Stop", icon="stop").add_class("dl-server-stop")
        self.view_button = w.Button(description="View", icon="eye").add_class("dl-server-view")
        self.view_button.on_click(lambda _: self.view())
        self.view_link = w.HTML("").add_class("dl-server-view-link")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.ui = w.VBox(
            [
                w.HBox([self.address, self.start_button, self.stop_button, self.view_button]),
                self.counters,
                self.message,
                self.view_link,
                w.HTML("<b>Recent activity</b>"),
                self.activity,
            ]
        ).add_class(self.css)
        self._seen: tuple[tuple[str, int], ...] = ()
        self._settle = 0
        self.refresh()
        self._ticker = threading.Thread(
            target=_tick,
            args=(weakref.ref(self), self._closed, refresh_s),
            name="dicomlab-server-panel",
            daemon=True,
        )
        self._ticker.start()

    def start(self) -> None:
        try:
            self.local.start()
        except dl.DicomlabError as exc:
            self.say(explain(exc), "error")
        else:
            tls = f", TLS on {self.local.tls_port}" if self.local.tls is not None else ""
            self.say(f"listening on port {self.local.port}{tls}", "ok")
        self.refresh()

    def stop(self) -> None:
        self.local.stop()
        self.say("stopped", "ok")
        self.refresh()

    def view(self) -> str | None:
        """A link to the viewer's study list of this LocalPACS (its web port)."""
        try:
            url = self.local.viewer_url()
        except dl.DicomlabError as exc:
            self.say(explain(exc), "error")
            return None
        self.view_link.value = (
            f'<a href="{html.escape(url)}" target="_blank" rel="noopener">Open the viewer</a>'
        )
        return url

    def refresh(self) -> None:
        lp = self.local
        tls = f" · TLS {lp.tls_port}" if lp.tls is not None else ""
        state = (
            f"<span style='color:#1a7f37'>● running</span> on {lp.host}:{lp.port}{tls}"
            if lp.running
            else "<span style='color:#b42318'>● stopped</span>"
        )
        web = f" · web {lp.web_url}" if lp.serves_web else ""
        self.address.value = f"<b>{lp.ae_title}</b> {state}{html.escape(web)}"
        self.view_button.disabled = not (lp.serves_web)
        self.start_button.disabled = lp.running
        self.stop_button.disabled = not lp.running
        stats = lp.stats
        disk = stats.get("bytes", 0) / 1e6
        self.counters.value = (
            f"associations {stats.get('associations', 0)} · rejected {stats.get('rejected', 0)}"
            f" · instances received {stats.get('stored', 0)} · duplicates "
            f"{stats.get('duplicates', 0)} · failed {stats.get('failed', 0)} · "
            f"{disk:.1f} MB received · connections waiting to associate "
            f"{stats.get('pending', 0)} · dropped {stats.get('dropped', 0)}"
        )
        # Reading the log (and flushing it) only when something happened: after a change
        # of the counters, and for two more ticks, while the rows of that activity land.
        # (Connections waiting or dropped are not activity worth a log read: a flood would
        # make every tick read it.)
        seen = tuple(sorted((k, v) for k, v in stats.items() if k not in ("pending", "dropped")))
        if seen != self._seen:
            self._seen, self._settle = seen, 3
        if self._settle == 0:
            return
        self._settle -= 1
        try:
            ops = dl.read_log(since="today")
        except dl.DicomlabError:
            ops = pd.DataFrame()
        if not ops.empty:
            ours = ops[(ops["role"] == "SCP") & (ops["local_ae"] == lp.ae_title)]
            cols = ["started_at", "service", "peer_ae", "principal", "status_name", "duration_s"]
            self.activity.value = frame_html(
                ours.sort_values("started_at", ascending=False)[cols], max_rows=10
            )

    def close(self) -> None:
        super().close()
        self._ticker.join(5)


def _tick(ref: weakref.ref[ServerPanel], closed: threading.Event, every: float) -> None:
    while not closed.wait(every):
        panel = ref()
        if panel is None:
            return
        try:
            panel.refresh()
        except Exception:  # a refresh must never kill the ticker loudly
            pass
        del panel
