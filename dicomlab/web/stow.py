"""STOW-RS as a client: instances sent as the bytes of their files, in one
``multipart/related`` POST per batch (PS3.18 10.5).

dicomweb-client's ``store_instances`` takes pydicom Datasets and encodes each again,
so every file would be parsed and re-written on the way: slower, and not the bytes
the archive holds. Here each part is a file's bytes as they are; the answer (the
DICOM JSON of PS3.18 10.5.3) becomes a Dataset for the caller to read statuses from.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pydicom.dataset import Dataset

from dicomlab.errors import DICOMwebError
from dicomlab.web.session import WebClient, web_of

__all__ = ["multipart", "post"]


def multipart(files: Iterable[bytes], boundary: str) -> bytes:
    """One ``multipart/related; type="application/dicom"`` body of ``files`` (pure)."""
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body = bytearray()
    for data in files:
        body += head
        body += data
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body)


def post(web: WebClient, files: list[bytes], study: str | None = None) -> Dataset:
    """POST ``files`` to the node's STOW-RS resource (``/studies``, or one study's);
    the server's answer as a Dataset (empty when it sent none). HTTP errors raise
    ``requests.HTTPError`` for :func:`~dicomlab.web.session.translating`."""
    root = web_of(web.node)
    url = f"{root.url}/studies" + (f"/{study}" if study else "")
    boundary = uuid.uuid4().hex
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    response = web.session.post(
        url, data=multipart(files, boundary), headers=headers, timeout=root.timeout
    )
    web.seen(response)
    response.raise_for_status()
    if not response.content:
        return Dataset()
    try:
        answer = response.json()
        if not isinstance(answer, dict):
            raise TypeError(f"a JSON {type(answer).__name__}, not an object")
        return Dataset.from_json(answer)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DICOMwebError(
            f"STOW-RS on {web.node.address}: the answer is not a DICOM JSON data set ({exc})",
            node=web.node,
            http_status=response.status_code,
            hint="the server may have stored the instances: look them up before sending again",
        ) from None
