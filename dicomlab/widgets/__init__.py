"""ipywidgets panels: nodes, query, transfers, network report, server, worklist, and the
App.

They call dicomlab's public API only (never pynetdicom), run network work in worker
threads, and expose their results to code (``panel.result``, ``panel.selection``).
"""

from __future__ import annotations

from dicomlab.widgets.app import App
from dicomlab.widgets.nodes import NodePanel
from dicomlab.widgets.query import QueryPanel
from dicomlab.widgets.report import NetworkReport
from dicomlab.widgets.server import ServerPanel
from dicomlab.widgets.transfers import TransferPanel
from dicomlab.widgets.worklist import WorklistPanel

__all__ = [
    "App",
    "NetworkReport",
    "NodePanel",
    "QueryPanel",
    "ServerPanel",
    "TransferPanel",
    "WorklistPanel",
]
