"""A command set that cannot be understood ends the association with an A-ABORT.

pynetdicom decodes an incoming DIMSE message in its DUL thread and trusts the command
set: one without a Command Field or a Command Data Set Type raises there, killing the
thread (the peer then sees a bare close, and nothing is logged but a traceback); a
request without a Message ID is queued, then ignored, and the peer waits forever.
:func:`install` checks each command set as its last fragment arrives, with the pure
codec of :mod:`dicomlab.net.wire`, before pynetdicom sees it: one that lacks what PS3.7
requires of every message (Command Field, Data Set Type, Message ID for a request,
Message ID Being Responded To and Status for a response) is a protocol error, and
the association is aborted as PS3.8 says for one (the state machine's Evt19: an
A-ABORT to the peer). Any other exception while decoding a message does the same.

It is installed on every association, both roles, whether or not the fast path is on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from dicomlab.net import wire

__all__ = ["command_problem", "install"]

log = logging.getLogger(__name__)

_C_CANCEL_RQ = 0x0FFF
_IS_RESPONSE = 0x8000


def command_problem(command: wire.Command) -> str | None:
    """What a decoded command set lacks (None when it has all PS3.7 requires of any message)."""
    if command.command_field is None:
        return "no Command Field"
    if command.data_set_type is None:
        return "no Command Data Set Type"
    if command.command_field == _C_CANCEL_RQ:
        return None if command.responded_to is not None else "no Message ID Being Responded To"
    if command.command_field & _IS_RESPONSE:
        if command.responded_to is None:
            return "no Message ID Being Responded To"
        if command.status is None:
            return "no Status"
        return None
    return None if command.message_id is not None else "no Message ID"


_GUARDED: weakref.WeakSet[Any] = weakref.WeakSet()
"""Associations already guarded (kept here, not as an attribute stuck on pynetdicom's)."""


def install(assoc: Any) -> None:
    """Check every incoming command set of ``assoc`` (before it starts)."""
    if assoc in _GUARDED:
        return
    _GUARDED.add(assoc)
    dimse = assoc.dimse
    dimse.receive_primitive = _receive(assoc, dimse.receive_primitive)


def _receive(assoc: Any, original: Callable[[Any], None]) -> Callable[[Any], None]:
    command = bytearray()

    def abort(why: str) -> None:
        log.warning("invalid DIMSE message from %s: %s; aborting", _peer(assoc), why)
        command.clear()
        assoc.dimse.message = None
        assoc.dul.event_queue.put("Evt19")  # unrecognised or invalid PDU: A-ABORT (AA-8)

    def receive(primitive: Any) -> None:
        for _, data in getattr(primitive, "presentation_data_value_list", None) or []:
            control = data[0] if data else 0
            if not control & 0x01:
                continue
            command.extend(data[1:])
            if control & 0x02:
                try:
                    problem = command_problem(wire.decode_command(command))
                except ValueError as exc:
                    problem = str(exc)
                command.clear()
                if problem is not None:
                    abort(f"a command set with {problem}" if problem.startswith("no ") else problem)
                    return
        try:
            original(primitive)
        except Exception as exc:
            abort(f"{type(exc).__name__}: {exc}")

    return receive


def _peer(assoc: Any) -> str:
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    return f"{str(getattr(peer, 'ae_title', '') or '').strip()}@{getattr(peer, 'address', '')}"
