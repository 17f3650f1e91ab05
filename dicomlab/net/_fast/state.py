"""The fast path's state for one association: one typed object, attached once.

:func:`dicomlab.net._fast.reactor.install` makes a :class:`FastState` for each association
it adapts and keeps it on the association under one attribute; every other module of
the fast path reads it through :func:`state_of`. Nothing else is added to pynetdicom's
objects (the members it replaces are listed in :mod:`dicomlab.net._fast.privates`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FastState", "Park", "attach", "state_of"]

_ATTRIBUTE = "_dicomlab_fast"


class Park:
    """The DUL thread's parking place: while parked it does not touch the socket."""

    def __init__(self) -> None:
        self.requested = False
        self.parked = threading.Event()
        self.resume = threading.Event()

    def hold(self, dul: Any, tick: float) -> None:
        """Called by the DUL loop: wait here while parking is requested (or until killed).

        An association being killed (pynetdicom's abort waits for its DUL to send the
        A-ABORT and reach Sta1) takes the socket back even from a holder that never
        released it: the holder finds the association ended."""
        self.parked.set()
        try:
            while self.requested and not self.resume.wait(tick):
                if dul._kill_thread:
                    return
                if getattr(dul.assoc, "_kill", False):
                    self.requested = False
                    return
        finally:
            self.parked.clear()


@dataclass(eq=False, slots=True)
class FastState:
    """What the fast path keeps for one adapted association.

    ``wake_dul`` wakes its DUL thread wherever it waits; ``wake_reactor`` is set when a
    DIMSE message, a release or an abort arrives for its reactor; ``park`` is where the
    DUL thread waits while a direct sender has the socket.
    """

    wake_dul: Callable[[], None]
    wake_reactor: threading.Event = field(default_factory=threading.Event)
    park: Park = field(default_factory=Park)
    ending: bool = False
    """The peer asked to release and our reply is on its way: the slot is free."""
    serves_store: bool | None = None
    """Whether a C-STORE-RQ can arrive (found out at the first message)."""
    message_id: int = 0
    """The last message ID the direct path used on this association."""
    peer_max_pdu: int | None = None
    """The peer's maximum PDU length, once the association is established."""


def attach(assoc: Any, state: FastState) -> None:
    setattr(assoc, _ATTRIBUTE, state)


def state_of(assoc: Any) -> FastState | None:
    """The association's fast-path state; None when it was not adapted."""
    state = getattr(assoc, _ATTRIBUTE, None)
    return state if isinstance(state, FastState) else None
