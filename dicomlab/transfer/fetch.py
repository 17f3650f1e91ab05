"""What a protocol gives the retrieve queue: a :class:`Fetcher` that brings one item
into a LocalPACS.

:func:`dicomlab.transfer.retrieve.run_retrieve` owns everything that is the same
whatever the protocol: the queue and its workers, the progress bar, skipping what is
already in the archive, retries of transient errors, cancellation, and the outcome
row's verdict (complete or not, and why). A protocol (C-GET and C-MOVE:
:mod:`dicomlab.transfer.getmove`; WADO-RS next) only counts an item and fetches it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from dicomlab.core.items import Item
from dicomlab.core.nodes import Node
from dicomlab.server.localpacs import LocalPACS

__all__ = ["Cancelled", "Fetcher", "FetcherFactory", "Refused"]


class Cancelled(Exception):
    """Raised inside a worker when the job was cancelled."""


Refused = tuple[str, int, str]
"""An instance we refused: its SOP Instance UID, the status we answered, and why."""


class Fetcher(Protocol):
    """Retrieves the items of one retrieve call, from one node, into one LocalPACS.

    Shared by the call's worker threads (a fetcher keeps one connection per thread and
    never reuses one after an operation that did not end cleanly). ``method`` is what
    the outcome rows say (``move``, ``get``; ``wado`` next).
    """

    method: str

    def plan(self, item: Item) -> int | None:
        """How many instances ``item`` has at the node (None: it cannot say); raises a
        :class:`~dicomlab.errors.DicomlabError` when it could not ask."""
        ...

    def fetch(self, item: Item, row: dict[str, Any], progress: Callable[[int], None]) -> None:
        """Bring ``item`` into the archive. Fills ``row``'s ``status``, ``status_text``,
        ``completed``, ``failed``, ``warning`` and ``error``, and ``refused`` (a list of
        :data:`Refused`) and ``no_scp_role`` when they apply; calls ``progress`` with
        each number of instances done. Raises :class:`Cancelled` when cancelled, a
        transient :class:`~dicomlab.errors.DicomlabError` to be tried again, any other
        one to give up."""
        ...

    def gone(self) -> str | None:
        """Why no further attempt can succeed (the destination stopped), else None."""
        ...

    def idle(self) -> None:
        """Release the calling thread's kept connection (it waits while the peer is
        busy: an idle association would hold one of the peer's slots)."""
        ...

    def close(self) -> None:
        """Release every connection it holds (the job ended)."""
        ...


class FetcherFactory(Protocol):
    def __call__(
        self, node: Node, into: LocalPACS, method: str, ours: str, cancel: threading.Event
    ) -> Fetcher: ...
