"""WADO-RS as a client: a study, series or instance as the DICOM files the server holds,
read part by part as the answer streams in, each part's bytes exactly as sent.

dicomweb-client decodes each part into a pydicom Dataset and hands over whatever a
response held when the connection closed, the last part included even without its
closing boundary; pydicom then reads a cut-off file as a shorter one. The archive must
never keep a partial instance, and keeps files byte for byte, so the answer is read
here over the node's requests session: a part counts only once the boundary after it
has arrived, and an answer that ends before its closing boundary raises a transient
:class:`~dicomlab.errors.DICOMwebError` (``broken``).
"""

from __future__ import annotations

from collections.abc import Iterator

import requests

from dicomlab.core.nodes import Node
from dicomlab.errors import DICOMwebError

__all__ = ["ACCEPT_AS_STORED", "ACCEPT_DEFAULT", "parts", "wado_url"]

ACCEPT_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
"""The instances in the transfer syntax the server holds them in (PS3.18 8.7.3.5)."""
ACCEPT_DEFAULT = 'multipart/related; type="application/dicom"'
"""The server's default transfer syntax (Explicit VR Little Endian)."""
_CHUNK = 1 << 20


def wado_url(root: str, study: str, series: str | None = None, sop: str | None = None) -> str:
    """The WADO-RS resource of a study, a series or an instance (PS3.18 10.4.1)."""
    url = f"{root}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if sop:
            url += f"/instances/{sop}"
    return url


def _boundary(response: requests.Response, node: Node) -> bytes:
    media, *params = [p.strip() for p in response.headers.get("Content-Type", "").split(";")]
    if media.lower() != "multipart/related":
        raise DICOMwebError(
            f"WADO-RS on {node.address} answered {media or 'no content type'}, not "
            "multipart/related",
            node=node,
            http_status=response.status_code,
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"').encode()
    raise DICOMwebError(f"WADO-RS on {node.address}: a multipart answer without a boundary")


def parts(response: requests.Response, node: Node) -> Iterator[bytes]:
    """The body of each part of a ``multipart/related`` answer, in order, each once the
    boundary after it has arrived; raises a broken :class:`DICOMwebError` when the answer
    ends before its closing boundary."""
    dash = b"--" + _boundary(response, node)
    delimiter = b"\r\n" + dash
    chunks = response.iter_content(_CHUNK)
    buf = bytearray()

    def more() -> None:
        piece = next(chunks, None)
        if piece is None:
            raise DICOMwebError(
                f"WADO-RS on {node.address}: the answer ended before its closing boundary "
                "(the connection closed mid-answer)",
                node=node,
                broken=True,
                hint="what arrived whole is kept; it will be tried again",
            )
        buf.extend(piece)

    while (start := buf.find(dash)) < 0:  # the preamble, up to the first boundary
        more()
    del buf[: start + len(dash)]
    while True:
        while len(buf) < 2:
            more()
        if buf[:2] == b"--":
            return  # the closing boundary
        while (head := buf.find(b"\r\n\r\n")) < 0:
            more()
        del buf[: head + 4]  # the part's headers
        search = 0
        while (end := buf.find(delimiter, search)) < 0:
            search = max(0, len(buf) - len(delimiter) + 1)
            more()
        yield bytes(buf[:end])
        del buf[: end + len(delimiter)]
