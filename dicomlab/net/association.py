"""Opening associations as a client: the only code that calls ``AE.associate``.

:func:`open_association` resolves the host, connects within the node's timeout
and either yields an established association or raises a typed
:class:`~dicomlab.errors.NetworkError` saying what went wrong. The association
is released when the block ends normally and aborted when it raises (it is
never reused after an interrupted operation).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node
from dicomlab.errors import ConfigError, TLSError, ValidationError
from dicomlab.net import diagnose
from dicomlab.net.tls import client_context
from dicomlab.net.transport import DicomlabAE, connect_error_of

__all__ = ["Opened", "calling_ae_title", "open_association", "resolve", "resolve_node"]

log = logging.getLogger(__name__)


def resolve(host: str) -> str:
    """The first address of ``host`` (IPv4 preferred); raises ``OSError`` (gaierror)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
    return str(infos[0][4][0])


def resolve_node(node: Node | str, book: NodeBook | None = None) -> Node:
    """A :class:`Node` from a node, a name in the book, or ``AE@HOST:PORT``."""
    if isinstance(node, Node):
        return node
    if not isinstance(node, str):
        raise ValidationError(f"expected a dl.Node, a node name or AE@HOST:PORT, got {node!r}")
    if "@" in node:
        return Node.parse(node)
    book = book if book is not None else NodeBook.load()
    if node not in book:
        raise ValidationError(
            f"no node named {node!r} in the node book {book.path}",
            hint=f"known nodes: {[n.name for n in book]}; or give AE@HOST:PORT",
        )
    return book[node]


def calling_ae_title(calling_ae: str | None, book: NodeBook | None) -> str:
    """Our AE title: the argument, else the book's local identity."""
    if calling_ae is not None:
        from dicomlab.core.nodes import validate_ae_title

        return validate_ae_title(calling_ae, "calling AE title")
    book = book if book is not None else NodeBook.load()
    return book.local.ae_title


@dataclass(frozen=True, slots=True)
class Opened:
    """An established association and when it was made."""

    assoc: Association
    node: Node
    connect_s: float


def _contexts(contexts: Sequence[PresentationContext | str]) -> list[PresentationContext]:
    return [c if isinstance(c, PresentationContext) else build_context(c) for c in contexts]


@contextmanager
def open_association(
    node: Node,
    contexts: Sequence[PresentationContext | str],
    *,
    calling_ae: str,
    evt_handlers: list[Any] | None = None,
    ext_neg: list[Any] | None = None,
    max_pdu: int = 0,
) -> Iterator[Opened]:
    """Open an association to ``node`` proposing ``contexts``; yield it, then release.

    Raises
    ------
    ResolveError, ConnectionRefused, ConnectTimeout, TLSError,
    AssociationRejected, AssociationAborted, NoAcceptedContext, NetworkError
    """
    cxs = _contexts(contexts)
    try:
        address = resolve(node.host)
    except OSError as exc:
        raise diagnose.resolve_error(node, exc) from None

    ae = DicomlabAE(ae_title=calling_ae)
    ae.connection_timeout = node.timeout
    ae.acse_timeout = node.timeout
    ae.dimse_timeout = node.timeout
    ae.network_timeout = max(node.timeout, 60.0)
    ae.maximum_pdu_size = max_pdu
    ae.requested_contexts = cxs

    tls_args = None
    if node.tls is not None:
        try:
            ctx = client_context(node.tls)
        except ConfigError as exc:
            raise TLSError(f"node {node.name!r}: {exc.message}", node=node, hint=exc.hint) from None
        tls_args = (ctx, node.tls.server_hostname or node.host)

    t0 = time.perf_counter()
    assoc = ae.associate(
        address,
        node.port,
        ae_title=node.ae_title,
        evt_handlers=evt_handlers or [],
        ext_neg=ext_neg,
        tls_args=tls_args,
    )
    elapsed = time.perf_counter() - t0
    if not assoc.is_established:
        _raise_failure(assoc, node, cxs, elapsed)

    try:
        yield Opened(assoc, node, elapsed)
    except BaseException:
        # Never reuse an association after an interrupted or failed operation.
        assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
        if assoc.is_established:  # pragma: no cover - peer never answered the release
            assoc.abort()


def _raise_failure(
    assoc: Association, node: Node, cxs: list[PresentationContext], elapsed: float
) -> None:
    """Raise the typed error for an association that was not established."""
    try:
        sock_error = connect_error_of(assoc)
        if assoc.is_rejected:
            rsp: Any = assoc.acceptor.primitive
            raise diagnose.rejected_error(
                node, int(rsp.result or 0), int(rsp.result_source or 0), int(rsp.diagnostic or 0)
            )
        if sock_error is not None:
            raise diagnose.connect_error(node, sock_error, node.timeout)
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            raise diagnose.no_context_error(node, [str(c.abstract_syntax) for c in cxs])
        timed_out = diagnose.waited_out(node, elapsed)
        raise diagnose.aborted_error(node, timed_out=timed_out, timeout=node.timeout)
    finally:
        if assoc.is_alive():
            assoc.abort()
