"""Associations kept between a transfer's items: one per worker thread.

Opening an association costs a round trip and the peer's negotiation (about 0.07 s
with Orthanc for the 124 contexts of a C-GET that does not know its SOP classes);
a retrieve of many studies used to pay it twice per study (the planning C-FIND,
then the C-GET or C-MOVE). A worker now keeps its association while every
operation on it ends with a final status; after a timeout, an abort, a cancel or an
exception it is aborted and never used again (:meth:`Sessions.discard`), and the
next item opens a fresh one. :meth:`Sessions.close_all` releases what is left when
the job ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from dicomlab.core.nodes import Node
from dicomlab.net.association import open_association

__all__ = ["Sessions"]


class _Held:
    def __init__(self, stack: ExitStack, assoc: Association) -> None:
        self.stack, self.assoc = stack, assoc

    def close(self, clean: bool) -> None:
        """Release (clean) or abort the association; idempotent."""
        if not clean and self.assoc.is_established:
            self.assoc.abort()
        self.stack.close()  # releases it if still established


class Sessions:
    """Per-thread reusable associations to one node, for one job."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[_Held] = []
        self._lock = threading.Lock()

    def open(
        self,
        node: Node,
        contexts: Sequence[PresentationContext | str],
        *,
        calling_ae: str,
        fits: Callable[[Association], bool] = lambda _: True,
        evt_handlers: list[Any] | None = None,
        ext_neg: list[Any] | None = None,
    ) -> Association:
        """This thread's association if it is still established and ``fits``; else a new one."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            if held.assoc.is_established and fits(held.assoc):
                return held.assoc
            self._drop(held, clean=True)
        stack = ExitStack()
        opened = stack.enter_context(
            open_association(
                node, contexts, calling_ae=calling_ae, evt_handlers=evt_handlers, ext_neg=ext_neg
            )
        )
        held = _Held(stack, opened.assoc)
        self._local.held = held
        with self._lock:
            self._all.append(held)
        return opened.assoc

    def discard(self) -> None:
        """Abort this thread's association (after an operation that did not end cleanly)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            self._drop(held, clean=False)

    def release(self) -> None:
        """Release this thread's association cleanly (it will wait a while)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            self._drop(held, clean=True)

    def _drop(self, held: _Held, clean: bool) -> None:
        self._local.held = None
        with self._lock:
            if held in self._all:
                self._all.remove(held)
        held.close(clean)

    def close_all(self) -> None:
        """Release every association still held (the job is over)."""
        with self._lock:
            held, self._all = self._all, []
        for h in held:
            h.close(clean=True)
