"""The one exception tree of dicomlab.

Every error dicomlab raises on purpose derives from :class:`DicomlabError` and
carries what a user needs to act: the node involved, the DIMSE status (when
there is one) and a hint saying what to try next::

    DicomlabError
    ├── ConfigError                 bad values or configuration (also a ValueError)
    │   ├── ValidationError         a value refused at construction (AE title, port, ...)
    │   └── NodeBookError           a node book file that cannot be read or saved
    │       └── NodeBookConflict    the file changed on disk since it was loaded
    ├── NetworkError                no usable association with a peer
    │   ├── ResolveError            the host name does not resolve (DNS)
    │   ├── ConnectionRefused       nothing listens on that host and port
    │   ├── ConnectTimeout          the TCP connection was not established in time
    │   ├── TLSError                the TLS handshake failed (CA, hostname, expiry, client cert)
    │   ├── AssociationRejected     the peer rejected the association (reason attached)
    │   ├── AssociationAborted      the peer aborted, or never answered the request
    │   └── NoAcceptedContext       the peer accepted none of the contexts we need
    ├── DimseError                  an operation ended with a failure status, with nothing delivered
    │   ├── OperationRefused        the peer refused it (not authorised, out of resources, unknown
    │   │                           destination) or we refused what it sent
    │   └── DimseTimeout            no response within the node's timeout
    ├── DICOMwebError               a DICOMweb request answered with an HTTP error (``http_status``)
    └── DeidentificationError       de-identification refused an instance (identifying text
                                    survived, a data set it cannot rewrite) or a key that does
                                    not open a pseudonym map

    PartialResultWarning (a UserWarning, not an error): rows came, then a failure or a cap;
    the rows are returned, ``df.attrs`` says so, and the notebook shows the warning.
    BurnedInAnnotationWarning (a UserWarning): de-identified images that may carry text in
    their pixels (BurnedInAnnotation YES, or a modality that often does), which header
    de-identification does not remove.

Network errors are raised by operations (find, retrieve, store); ``dl.echo``
never raises for them and reports the same diagnosis as data instead. A query that
fails before delivering anything raises a :class:`DimseError`; tables of many items
(``find_many``, ``retrieve``, ``store``) keep each item's status and error instead,
and warn with :class:`PartialResultWarning` when any item failed.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicomlab.core.nodes import Node

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "BurnedInAnnotationWarning",
    "ConfigError",
    "ConnectTimeout",
    "ConnectionRefused",
    "DICOMwebError",
    "DeidentificationError",
    "DicomlabError",
    "DimseError",
    "DimseTimeout",
    "NetworkError",
    "NoAcceptedContext",
    "NodeBookConflict",
    "NodeBookError",
    "OperationRefused",
    "PartialResultWarning",
    "ResolveError",
    "TLSError",
    "ValidationError",
    "warn_partial",
]


class DicomlabError(Exception):
    """Base of every dicomlab error.

    Parameters
    ----------
    message
        What happened, in plain words.
    node
        The node involved, if any.
    status
        The DIMSE status, if the peer sent one.
    hint
        What to try next.
    """

    def __init__(
        self,
        message: str,
        *,
        node: Node | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.status = status
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text

    @property
    def transient(self) -> bool:
        """True when the same operation may succeed if tried again (a timeout, an abort,
        a peer that said it is busy): transfers retry these, and nothing else."""
        return False


class ConfigError(DicomlabError, ValueError):
    """A value or a configuration that dicomlab refuses."""


class ValidationError(ConfigError):
    """A value refused at construction; the message quotes it.

    ``field`` names the refused field (``"port"``, ``"ae_title"``...) when known.
    """

    field: str | None = None


class NodeBookError(ConfigError):
    """A node book file that cannot be read or written.

    ``path`` and ``line`` (1-based, when known) locate the problem.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}", hint=hint)
        self.path = path
        self.line = line


class NodeBookConflict(NodeBookError):
    """The node book file changed on disk after it was loaded; saving would lose that edit."""


class NetworkError(DicomlabError):
    """No usable association with a peer."""


class ResolveError(NetworkError):
    """The host name does not resolve."""


class ConnectionRefused(NetworkError):
    """The peer host answered but nothing listens on that port."""


class ConnectTimeout(NetworkError):
    """The TCP connection was not established within the node's timeout."""

    @property
    def transient(self) -> bool:
        return True


class TLSError(NetworkError):
    """The TLS handshake failed; the message says which check."""


class AssociationRejected(NetworkError):
    """The peer rejected the association.

    ``result``, ``source`` and ``reason`` are the A-ASSOCIATE-RJ fields.
    """

    def __init__(
        self,
        message: str,
        *,
        node: Node | None = None,
        hint: str | None = None,
        result: int | None = None,
        source: int | None = None,
        reason: int | None = None,
    ) -> None:
        super().__init__(message, node=node, hint=hint)
        self.result = result
        self.source = source
        self.reason = reason

    @property
    def transient(self) -> bool:
        """True when the peer said the rejection is transient (worth retrying)."""
        return self.result == 0x02


class AssociationAborted(NetworkError):
    """The peer aborted the association or never answered the request."""

    @property
    def transient(self) -> bool:
        return True


class NoAcceptedContext(NetworkError):
    """The peer accepted none of the presentation contexts we proposed."""


class DimseError(DicomlabError):
    """A DIMSE operation ended with a failure status (``status``), or never ended.

    ``comment`` is the peer's Error Comment, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        node: Node | None = None,
        status: int | None = None,
        hint: str | None = None,
        comment: str | None = None,
    ) -> None:
        super().__init__(message, node=node, status=status, hint=hint)
        self.comment = comment


class OperationRefused(DimseError):
    """The peer refused the operation (PS3.4's "Refused" statuses: not authorised, out
    of resources, move destination unknown), or we refused what the peer sent us."""


class DimseTimeout(DimseError):
    """No DIMSE response within the node's timeout."""

    @property
    def transient(self) -> bool:
        return True

    @staticmethod
    def sentence(
        service: str, node: Node, why: str = "timed out; the association was aborted"
    ) -> str:
        """The one wording of it: ``no C-FIND response from AE@host:port within 30 s (why)``."""
        return f"no {service} response from {node.address} within {node.timeout:g} s ({why})"

    @classmethod
    def of(
        cls, service: str, node: Node, why: str = "timed out; the association was aborted"
    ) -> DimseTimeout:
        return cls(cls.sentence(service, node, why), node=node)


class DeidentificationError(DicomlabError):
    """De-identification refused an instance, or a key does not open a pseudonym map.

    The message names attributes, never their values (which may identify a patient);
    ``attributes`` lists those where identifying text survived."""

    def __init__(
        self,
        message: str,
        *,
        attributes: tuple[str, ...] = (),
        node: Node | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, node=node, hint=hint)
        self.attributes = attributes


class BurnedInAnnotationWarning(UserWarning):
    """De-identified images may show identifying text in their pixels."""


class DICOMwebError(DicomlabError):
    """A DICOMweb request answered with an HTTP error status (``http_status``: 401 not
    authenticated, 403 not allowed, 404 no such resource or service, 429 and 503 busy,
    ...), or whose answer broke off (``broken``); ``transient`` for what is worth
    retrying (a broken answer; 408, 429, 502, 503, 504)."""

    def __init__(
        self,
        message: str,
        *,
        node: Node | None = None,
        http_status: int | None = None,
        hint: str | None = None,
        retry_after_s: float | None = None,
        broken: bool = False,
    ) -> None:
        super().__init__(message, node=node, hint=hint)
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.broken = broken  # the connection broke during the answer

    @property
    def transient(self) -> bool:
        return self.broken or self.http_status in (408, 429, 502, 503, 504)


class PartialResultWarning(UserWarning):
    """Some rows came, then a failure, a cancel or a cap: the result is partial.

    The rows are returned and ``df.attrs["complete"]`` is False; this warning makes the
    notebook show it.
    """


_PACKAGE = str(Path(__file__).resolve().parent)


def warn_partial(message: str) -> None:
    """Warn with a :class:`PartialResultWarning` attributed to the caller's code: the
    first frame outside dicomlab (so the notebook cell that asked is the one shown,
    however many of our layers are in between)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(PartialResultWarning(message), stacklevel=level)
