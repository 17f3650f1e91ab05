"""App: every panel in tabs, the one-call entry point for a notebook."""

from __future__ import annotations

import ipywidgets as w

import dicomlab as dl
from dicomlab.widgets.base import Panel
from dicomlab.widgets.nodes import NodePanel
from dicomlab.widgets.query import QueryPanel
from dicomlab.widgets.report import NetworkReport
from dicomlab.widgets.server import ServerPanel
from dicomlab.widgets.transfers import TransferPanel
from dicomlab.widgets.worklist import WorklistPanel

__all__ = ["App"]


class App(Panel):
    """Tabs: Nodes, Query (its transfer queue below the results), Network report, and
    Server and Worklist when ``local`` is given.

    ``local`` is where retrieves go and the server the Server tab shows (default:
    none: no Server tab, and retrieves use the notebook's default LocalPACS).
    ``app.tab_titles`` lists the tabs shown.
    """

    css = "dl-app"

    def __init__(self, book: dl.NodeBook | None = None, local: dl.LocalPACS | None = None) -> None:
        super().__init__()
        self.book = book if book is not None else dl.NodeBook.load()
        self.nodes = NodePanel(self.book)
        self.transfers = TransferPanel(self.book, into=local)
        self.query = QueryPanel(self.book, transfers=self.transfers)
        self.report = NetworkReport()
        self.server = ServerPanel(local) if local is not None else None
        self.worklist = WorklistPanel(local) if local is not None else None
        children = [self.nodes.ui, self.query.ui, self.report.ui]
        titles = ["Nodes", "Query", "Network report"]
        if self.server is not None and self.worklist is not None:
            children += [self.server.ui, self.worklist.ui]
            titles += ["Server", "Worklist"]
        self.tabs = w.Tab(children)
        self.tab_titles = tuple(titles)
        for i, title in enumerate(titles):
            self.tabs.set_title(i, title)
        self.ui = w.VBox([self.tabs, self.message]).add_class(self.css)

    def close(self) -> None:
        for panel in (self.nodes, self.query, self.report, self.server, self.worklist):
            if panel is not None:
                panel.close()
        super().close()
