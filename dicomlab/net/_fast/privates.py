"""Every private member of pynetdicom (and of the standard library) dicomlab relies on.

The fast path (:mod:`dicomlab.net._fast`) and the
transport adapt pynetdicom's associations by replacing or reading members pynetdicom
does not promise to keep. They are all listed here, with the pynetdicom versions they
were verified against. :func:`problems` names any that a release has renamed or
removed: the fast path then refuses to install (pynetdicom runs as shipped, as with
``DICOMLAB_FASTPATH=0``: slower, still correct) and says why in the log, and
tests/test_privates.py fails loudly, so an upgrade is never silently slower or broken.

The one member dicomlab adds itself (the association's :class:`~dicomlab.net._fast.state.FastState`)
is not listed.
"""

from __future__ import annotations

import functools
import importlib
import logging
import socket
import threading
from typing import Any

__all__ = ["PRIVATE_MEMBERS", "VERIFIED_WITH", "problems"]

log = logging.getLogger(__name__)

VERIFIED_WITH = ("3.0.4",)
"""pynetdicom releases this list was checked against (pyproject pins >=3.0.4,<4)."""

PRIVATE_MEMBERS: dict[str, tuple[str, ...]] = {
    # module-level tables and options
    "pynetdicom._config": ("STORE_SEND_CHUNKED_DATASET",),
    "pynetdicom.dimse": ("_RQ_TO_MESSAGE", "_RSP_TO_MESSAGE"),
    # the DUL thread: its loop pieces are replaced per association (reactor.install)
    "pynetdicom.dul.DULServiceProvider": (
        "_is_transport_event",
        "_send",
        "_read_pdu_data",
        "_kill_thread",
        "_idle_timer",
        "_run_loop_delay",
        "_target",  # threading.Thread's: the DUL's run loop is wrapped
    ),
    # the association thread: its reactor is replaced, its pause flag read
    "pynetdicom.association.Association": (
        "_is_paused",
        "_serve_request",
        "_run_reactor",
        "_kill",
        "_sent_release",
        "_accepted_cx",
    ),
    "pynetdicom.transport.AssociationSocket": (
        "_is_connected",
        "_create_socket",
        "_shutdown_socket",
        "_ready",
    ),
    "pynetdicom.ae.ApplicationEntity": ("_servers",),
    "pynetdicom.dimse_messages.C_STORE_RQ": ("_data_set_path",),
    "pynetdicom.dimse_primitives.C_STORE": (
        "_context_id",
        "_affected_sop_class_uid",  # set directly once our own check passed (store._request)
        "_affected_sop_instance_uid",
    ),
    "pynetdicom.presentation.PresentationContext": ("_transfer_syntax",),
    "queue.Queue": ("_put",),  # the DUL's outgoing queue wakes its select() on put
    "threading.Thread": ("_target",),
}
"""Owner (module, or module.Class) -> the private members read or replaced on it."""


def _resolve(owner: str) -> Any:
    try:
        return importlib.import_module(owner)
    except ImportError:
        module, _, name = owner.rpartition(".")
        return getattr(importlib.import_module(module), name)


def _instance(owner: str, cls: Any) -> Any:
    """An object of ``cls`` as pynetdicom builds it (instance attributes are set in
    ``__init__``), made without starting a thread or opening a connection."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.transport import AssociationSocket

    if owner.endswith("DULServiceProvider"):
        return Association(AE(), "requestor").dul
    if owner.endswith("Association"):
        return Association(AE(), "requestor")
    if owner.endswith("AssociationSocket"):
        with socket.socket() as raw:  # never connected; closed here
            return AssociationSocket(Association(AE(), "requestor"), client_socket=raw)
    if owner == "threading.Thread":
        return threading.Thread(target=lambda: None)
    return cls()


@functools.cache
def problems() -> tuple[str, ...]:
    """The listed members this pynetdicom lacks (empty when everything is where it was)."""
    missing = []
    for owner, members in PRIVATE_MEMBERS.items():
        try:
            target = _resolve(owner)
            if isinstance(target, type):
                target = _instance(owner, target)
        except Exception as exc:  # a class moved or renamed
            missing.append(f"{owner} ({type(exc).__name__}: {exc})")
            continue
        missing.extend(f"{owner}.{m}" for m in members if not hasattr(target, m))
    if missing:
        import pynetdicom

        log.warning(
            "pynetdicom %s lacks %s (checked with %s): the fast path is off",
            pynetdicom.__version__,
            ", ".join(missing),
            ", ".join(VERIFIED_WITH),
        )
    return tuple(missing)
