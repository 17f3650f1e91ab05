"""WADO-RS retrieve of one item into a LocalPACS: the DICOMweb :class:`Fetcher`.

A study, a series or an instance comes as ``multipart/related; type=application/dicom``
in the transfer syntax the server holds it in (``transfer-syntax=*``; a server that
refuses that, 406, is asked again for its default, Explicit VR Little Endian). The
parts are read one at a time as they stream in (:func:`dicomlab.web.wado.parts`), never
a whole study in memory, and each file goes through the archive byte for byte, as a
received C-STORE does: checked (:func:`core.indexrow.checked_file`: it parses to its
end), written to a temporary name and renamed, then indexed. A part that the answer
cut off is never kept (its closing boundary never came). The count to expect comes
from a QIDO-RS instance search first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.errors import InvalidDicomError

from dicomlab.core.call import Call
from dicomlab.core.indexrow import HeaderError, checked_file
from dicomlab.core.items import Item
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.errors import DicomlabError, DICOMwebError, ValidationError
from dicomlab.log.record import now
from dicomlab.server.localpacs import LocalPACS
from dicomlab.transfer.fetch import Cancelled, Refused
from dicomlab.web import qido
from dicomlab.web.session import Clients, WebClient, translating, web_of
from dicomlab.web.wado import ACCEPT_AS_STORED, ACCEPT_DEFAULT, parts, wado_url

__all__ = ["Wado"]

_STATUS_CANNOT_UNDERSTAND = 0xC000


class Wado:
    """The WADO-RS :class:`~dicomlab.transfer.fetch.Fetcher` of one retrieve call."""

    method = "wado"

    def __init__(
        self, node: Node, into: LocalPACS, method: str, ours: str, cancel: threading.Event
    ) -> None:
        self.node, self.into, self.ours, self.cancel = node, into, ours, cancel
        self.clients = Clients(node)  # one client (one HTTP session) per worker

    def plan(self, item: Item) -> int | None:
        """The item's instance count, from a QIDO-RS instance search."""
        if item.expected is not None:
            return item.expected
        query = Query("image", tuple(item.filters().items()), ())
        found = qido.find(Call(self.node, self.ours, progress=False), query, warn=False)
        return len(found) if found.attrs["complete"] else None

    def _parts(self, web: WebClient, item: Item, accept: str) -> Iterator[bytes]:
        """The item's instances as the files the server sent, one at a time."""
        if item.sop and item.series is None:  # WADO-RS names an instance by its series too
            raise ValidationError(f"instance {item.sop} needs its SeriesInstanceUID")
        url = wado_url(web_of(self.node).url, item.study, item.series, item.sop)
        timeout = web_of(self.node).timeout
        with web.session.get(url, headers={"Accept": accept}, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            yield from parts(r, self.node)

    def fetch(self, item: Item, row: dict[str, Any], progress: Callable[[int], None]) -> None:
        try:
            self._fetch(item, row, progress, ACCEPT_AS_STORED)
        except DICOMwebError as exc:
            if exc.http_status != 406:
                raise
            self._fetch(item, row, progress, ACCEPT_DEFAULT)  # the server's default syntax

    def _fetch(
        self,
        item: Item,
        row: dict[str, Any],
        progress: Callable[[int], None],
        accept: str,
    ) -> None:
        stored, refused, nbytes = 0, [], 0
        web, started = self.clients.get(), now()
        try:
            with translating(self.node, "WADO-RS"):
                for data in self._parts(web, item, accept):
                    if self.cancel.is_set():
                        raise Cancelled()
                    problem = self._keep(data)
                    nbytes += len(data)
                    if problem is not None:
                        refused.append(problem)
                        continue
                    stored += 1
                    progress(1)
        except (DicomlabError, Cancelled) as exc:
            status = exc.http_status if isinstance(exc, DICOMwebError) else web.seen.status
            error = str(exc) if isinstance(exc, DicomlabError) else "cancelled"
            counts = {"n_completed": stored, "n_failed": len(refused), "bytes": nbytes}
            web.log.request(
                "WADO-RS", status, started, counts=counts, study=item.study, error=error
            )
            raise
        counts = {"n_completed": stored, "n_failed": len(refused), "bytes": nbytes}
        web.log.request("WADO-RS", 200, started, counts=counts, study=item.study)
        row.update(
            status=0x0000 if not refused else 0xB000,
            status_text="Success" if not refused else "Warning: some instances refused",
            completed=stored,
            failed=len(refused),
            warning=0,
        )
        if refused:
            row["refused"] = [*(row.get("refused") or []), *refused]

    def _keep(self, data: bytes) -> Refused | None:
        """Check and archive one received file, byte for byte; why it was refused, if it
        was (a data set that does not parse to its end, bad UIDs)."""
        try:
            header, syntax, problem = checked_file(data)
            if problem is not None:
                raise HeaderError(problem)
        except (HeaderError, ValueError, InvalidDicomError) as exc:
            return ("", _STATUS_CANNOT_UNDERSTAND, str(exc))
        archive = self.into.archive
        with archive.receiving(str(header.get("StudyInstanceUID") or "")):
            archive.add(header, syntax, iter([data]), source_ae="WADO-RS")
        return None

    def gone(self) -> str | None:
        return None  # parts are written into the archive directly: nothing to stop

    def idle(self) -> None:
        return None  # HTTP keeps no slot of the server's while idle worth giving back

    def close(self) -> None:
        """Close every worker's HTTP session."""
        self.clients.close()
