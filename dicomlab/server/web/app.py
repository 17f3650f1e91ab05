"""The LocalPACS web port as a Starlette application.

Routes (under ``/dicom-web``, PS3.18): QIDO-RS searches (``/studies``, ``/series``,
``/instances`` and their nested forms), WADO-RS retrieves (study, series, instance as
multipart/related application/dicom streamed from disk; ``metadata``; ``frames``;
``bulkdata``; ``rendered`` and ``thumbnail``), STOW-RS (``POST /studies``). Besides:
``/zip/...`` downloads, ``/open`` (a token's link: sets the cookie, opens the viewer),
``/login`` and ``/logout``, ``/app-config.js``, and the OHIF viewer's files.

Every request but the viewer's own files needs a grant: a user (HTTP basic, or the
session cookie ``/login`` sets) or a token (``Authorization: Bearer``, the cookie
``/open`` sets, or ``?token=``). A token sees its studies only: what it may not see
answers 404, as what does not exist does, so UIDs cannot be probed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomlab.errors import ValidationError
from dicomlab.log.web import WebLog
from dicomlab.server.archive import Archive
from dicomlab.server.web import viewer
from dicomlab.server.web.access import Access, Grant
from dicomlab.server.web.dicomjson import instance_json, is_uid, match_json, qido_query, stow_json
from dicomlab.server.web.multipart import (
    RelatedReader,
    new_boundary,
    part_head,
    part_tail,
    related_stream,
)
from dicomlab.server.web.render import render
from dicomlab.server.web.zipstream import zip_stream

__all__ = ["COMPRESS", "WebContext", "build_app", "zip_entries"]

log = logging.getLogger(__name__)

COOKIE = "dicomlab"
COMPRESS = {"jpeg-ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}
"""``compress=`` of a zip download: lossless copies, through pydicom's encoders."""
_DICOM_JSON = "application/dicom+json"
_FAILURE = {"invalid": 0xA900, "not-dicom": 0xC000, "refused": 0xC000, "failed": 0xA700}
_MAX_PATH = 2048
_BAD_PATH = re.compile(r"%2[fF]|%5[cC]|%00|(^|/)\.\.?(/|$)|%2[eE]%2[eE]|\\")
_LONG_UID = re.compile(r"/(studies|series|instances)/[^/]{65,}")


@dataclass
class WebContext:
    """What the application serves and who may use it."""

    archive: Archive
    access: Access
    weblog: WebLog
    dicomweb: str = "/dicom-web"


# -- errors -----------------------------------------------------------------------------
def _bad(detail: str) -> HTTPException:
    return HTTPException(400, detail)


def _not_found() -> HTTPException:
    return HTTPException(404, "no such resource")


def _uid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not is_uid(value):
        raise _bad(f"{name} {value[:80]!r} is not a UID (digits and dots, at most 64)")
    return value


# -- access -----------------------------------------------------------------------------
def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE)


async def _grant(request: Request, need: str) -> Grant:
    ctx: WebContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    address = request.client.host if request.client else ""
    grant: Grant | None = None
    if header.lower().startswith("basic "):
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _bad("malformed basic credentials") from None
        wait = ctx.access.delay(name, address)
        if wait:
            await asyncio.sleep(wait)
        grant = await run_in_threadpool(ctx.access.login, name, password, address)
        if grant is None:
            raise HTTPException(401, "wrong user name or password", _CHALLENGE)
    else:
        secret = _secret(request)
        if secret:
            found = ctx.access.by_secret(secret)
            if isinstance(found, str):
                raise HTTPException(
                    401 if found == "unknown" else 403, f"token {found}", _CHALLENGE
                )
            grant = found
    if grant is None:
        raise HTTPException(401, "log in or give a share token", _CHALLENGE)
    request.state.principal = grant.principal
    if need not in grant.can:
        raise HTTPException(403, f"{grant.principal} may not {need}")
    return grant


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="dicomlab", charset="UTF-8"'}


def _scoped(grant: Grant, filters: dict[str, str]) -> dict[str, str] | None:
    """``filters`` restricted to the studies ``grant`` sees (None: nothing is visible)."""
    if grant.studies is None:
        return filters
    asked = [u for u in filters.get("StudyInstanceUID", "").split("\\") if u]
    visible = sorted(grant.studies & set(asked)) if asked else sorted(grant.studies)
    if not visible:
        return None
    return {**filters, "StudyInstanceUID": "\\".join(visible)}


def _path_uids(request: Request) -> dict[str, str]:
    names = {
        "study": "StudyInstanceUID",
        "series": "SeriesInstanceUID",
        "instance": "SOPInstanceUID",
    }
    return {key: _uid(request, name) for name, key in names.items() if name in request.path_params}


def _base(request: Request) -> str:
    ctx: WebContext = request.app.state.ctx
    return str(request.base_url).rstrip("/") + ctx.dicomweb


# -- QIDO-RS ----------------------------------------------------------------------------
def _qido(level: str) -> Callable[[Request], Awaitable[Response]]:
    async def search(request: Request) -> Response:
        grant = await _grant(request, "view")
        ctx: WebContext = request.app.state.ctx
        index = ctx.archive.index
        try:
            query = qido_query(
                list(request.query_params.multi_items()), index.supports, _path_uids(request)
            )
        except ValidationError as exc:
            raise _bad(str(exc)) from None
        filters = _scoped(grant, query.filters)
        base = _base(request)

        def answers() -> list[dict[str, Any]]:
            if filters is None:
                return []
            out: list[dict[str, Any]] = []
            for n, match in enumerate(index.find(level, filters, root="PATIENT")):
                if n < query.offset:
                    continue
                if query.limit is not None and len(out) >= query.limit:
                    break
                out.append(match_json(match, _retrieve_url(base, level, match)))
            return out

        found = await run_in_threadpool(answers)
        request.state.counts = {"n_matches": len(found)}
        headers = {}
        if query.unsupported:
            names = ", ".join(query.unsupported)
            headers["Warning"] = (
                f'299 dicomlab "The following attributes are not supported for matching: {names}"'
            )
        return JSONResponse(found, media_type=_DICOM_JSON, headers=headers)

    return search


def _retrieve_url(base: str, level: str, match: dict[str, Any]) -> str:
    url = f"{base}/studies/{match['StudyInstanceUID']}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{match['SeriesInstanceUID']}"
    if level == "IMAGE":
        url += f"/instances/{match['SOPInstanceUID']}"
    return url


# -- WADO-RS ----------------------------------------------------------------------------
async def _located(request: Request, need: str = "view") -> tuple[Grant, list[dict[str, Any]]]:
    grant = await _grant(request, need)
    ctx: WebContext = request.app.state.ctx
    filters = _scoped(grant, _path_uids(request))
    if filters is None:
        raise _not_found()
    found = await run_in_threadpool(ctx.archive.index.locate, filters)
    if not found:
        raise _not_found()
    return grant, found


async def retrieve(request: Request) -> Response:
    _, found = await _located(request)
    ctx: WebContext = request.app.state.ctx
    root = ctx.archive.root
    boundary = new_boundary()
    request.state.counts = {"n_completed": len(found)}

    heads = [
        part_head(boundary, f"application/dicom; transfer-syntax={row['TransferSyntaxUID']}")
        for row in found
    ]
    paths = [root / row["path"] for row in found]
    sizes = await run_in_threadpool(_sizes, paths)
    tail = part_tail(boundary)
    length = sum(len(h) + 2 for h in heads) + sum(sizes) + len(tail)
    return StreamingResponse(
        _prefetched(paths, heads, tail),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        headers={"Content-Length": str(length)},
    )


def _sizes(paths: list[Path]) -> list[int]:
    """Each file's size (the answer's Content-Length is known before its first byte);
    a file the index lists but the disk lacks refuses the request before it starts."""
    try:
        return [os.stat(p).st_size for p in paths]
    except FileNotFoundError as exc:
        raise HTTPException(
            500, f"the archive lacks a file its index lists ({exc.filename}): rebuild the index"
        ) from None


async def _prefetched(paths: list[Path], heads: list[bytes], tail: bytes) -> AsyncIterator[bytes]:
    """A multipart/related answer: each file read whole in a worker thread while the
    one before is being sent, and sent as it was read (with Content-Length, h11 passes
    a body chunk on without copying it; the part heads go as chunks of their own).

    A read waited for between sends left the socket idle: the answer ran at 0.7 of the
    speed it has now. At most two instances in memory; a read under way is awaited when
    the client goes away."""
    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, _read, paths[0]) if paths else None
    try:
        for i, head in enumerate(heads):
            assert pending is not None
            data = await pending
            nxt = i + 1 < len(paths)
            pending = loop.run_in_executor(None, _read, paths[i + 1]) if nxt else None
            yield (b"\r\n" + head) if i else head
            yield data
        yield (b"\r\n" + tail) if heads else tail
    finally:
        if pending is not None:
            await asyncio.wait([pending])


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@functools.lru_cache(maxsize=4096)
def _metadata_of(path: str, transfer_syntax: str, base: str) -> dict[str, Any]:
    ds = dcmread(path, stop_before_pixels=True)
    return instance_json(ds, transfer_syntax, base)


async def metadata(request: Request) -> Response:
    _, found = await _located(request)
    ctx: WebContext = request.app.state.ctx
    base = _base(request)

    def build() -> list[dict[str, Any]]:
        return [
            _metadata_of(
                str(ctx.archive.root / r["path"]),
                r["TransferSyntaxUID"],
                f"{base}/studies/{r['StudyInstanceUID']}/series/{r['SeriesInstanceUID']}"
                f"/instances/{r['SOPInstanceUID']}",
            )
            for r in found
        ]

    out = await run_in_threadpool(build)
    request.state.counts = {"n_matches": len(out)}
    return JSONResponse(out, media_type=_DICOM_JSON)


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        raise _bad(f"frames {text[:40]!r} must be numbers from 1, separated by commas") from None
    if not numbers or min(numbers) < 1 or len(numbers) > 10_000:
        raise _bad("frame numbers start at 1")
    return numbers


def _frames_of(path: str, syntax: str, numbers: list[int]) -> list[tuple[str, bytes]]:
    ds = dcmread(path, defer_size=4096)
    if "PixelData" not in ds:
        raise _not_found()
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        raise HTTPException(404, f"the instance has {count} frame(s)")
    pixels = ds.PixelData
    if UID(syntax).is_compressed:
        kind = f"application/octet-stream; transfer-syntax={syntax}"
        return [(kind, get_frame(pixels, n - 1, number_of_frames=count)) for n in numbers]
    size = (
        int(ds.Rows)
        * int(ds.Columns)
        * int(getattr(ds, "SamplesPerPixel", 1))
        * int(ds.BitsAllocated)
        // 8
    )
    kind = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    return [(kind, bytes(pixels[(n - 1) * size : n * size])) for n in numbers]


async def frames(request: Request) -> Response:
    numbers = _frame_numbers(str(request.path_params["frames"]))
    _, found = await _located(request)
    row = found[0]
    ctx: WebContext = request.app.state.ctx
    got = await run_in_threadpool(
        _frames_of, str(ctx.archive.root / row["path"]), row["TransferSyntaxUID"], numbers
    )
    boundary = new_boundary()
    body = b"".join(related_stream(((k, [b]) for k, b in got), boundary))
    request.state.counts = {"n_completed": len(got)}
    return Response(
        body, media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    )


async def bulkdata(request: Request) -> Response:
    tag = str(request.path_params["tag"])
    if not re.fullmatch(r"[0-9A-Fa-f]{8}", tag):
        raise _bad(f"bulkdata tag {tag[:20]!r} must be 8 hexadecimal digits")
    _, found = await _located(request)
    ctx: WebContext = request.app.state.ctx

    def read() -> bytes:
        ds = dcmread(str(ctx.archive.root / found[0]["path"]))
        elem = ds.get(int(tag, 16))
        if elem is None or not isinstance(elem.value, bytes):
            raise _not_found()
        return bytes(elem.value)

    value = await run_in_threadpool(read)
    boundary = new_boundary()
    body = b"".join(related_stream([("application/octet-stream", [value])], boundary))
    return Response(
        body, media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    )


def _picture(thumbnail: bool) -> Callable[[Request], Awaitable[Response]]:
    async def picture(request: Request) -> Response:
        _, found = await _located(request)
        ctx: WebContext = request.app.state.ctx
        accept = request.headers.get("accept", "")
        kind = "image/png" if "image/png" in accept and "image/jpeg" not in accept else "image/jpeg"
        frame = int(request.path_params.get("frame", 1))
        row = found[len(found) // 2]  # a series or study: its middle image
        size = 128 if thumbnail else None
        viewport = request.query_params.get("viewport", "")
        if viewport:
            try:
                size = max(int(v) for v in viewport.split(","))
            except ValueError:
                raise _bad(f"viewport={viewport[:40]!r} must be width,height") from None
        try:
            data = await run_in_threadpool(
                render, str(ctx.archive.root / row["path"]), frame, size, kind
            )
        except (ValueError, IndexError) as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type=kind)

    return picture


# -- STOW-RS ----------------------------------------------------------------------------
async def stow(request: Request) -> Response:
    await _grant(request, "upload")
    ctx: WebContext = request.app.state.ctx
    study = _uid(request, "study") if "study" in request.path_params else None
    try:
        reader = RelatedReader(request.headers.get("content-type", ""))
    except ValidationError as exc:
        raise HTTPException(415, str(exc)) from None
    if reader.type and reader.type.lower() != "application/dicom":
        raise HTTPException(415, f"STOW-RS takes application/dicom parts, not {reader.type}")
    base = _base(request)
    stored: list[tuple[str, str, str]] = []
    failed: list[tuple[str, str, int]] = []
    received = 0

    def keep(part: Any) -> None:
        try:
            added = ctx.archive.add_file(part.read(), source_ae="STOW-RS", study=study)
        finally:
            part.close()
        if added.status in ("stored", "duplicate"):
            row = ctx.archive.index.locate({"SOPInstanceUID": added.sop_instance_uid})
            url = _retrieve_url(base, "IMAGE", row[0]) if row else base
            stored.append((added.sop_class_uid, added.sop_instance_uid, url))
        else:
            log.warning("STOW-RS part refused (%s): %s", added.status, added.error)
            failed.append(
                (added.sop_class_uid, added.sop_instance_uid, _FAILURE.get(added.status, 0xC000))
            )

    try:
        async for chunk in request.stream():
            received += len(chunk)
            for part in reader.feed(chunk):
                await run_in_threadpool(keep, part)
    except ValidationError as exc:
        raise _bad(str(exc)) from None
    finally:
        reader.close()
    request.state.counts = {"n_completed": len(stored), "n_failed": len(failed), "bytes": received}
    if not stored and not failed:
        raise _bad("the body holds no part")
    status = 200 if not failed else (202 if stored else 409)
    return JSONResponse(stow_json(stored, failed), status_code=status, media_type=_DICOM_JSON)


# -- zip --------------------------------------------------------------------------------
def zip_entries(archive: Archive, rows: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(name in the zip, path) of each row: ``study/series/instance.dcm`` by UID."""
    for r in rows:
        name = f"{r['StudyInstanceUID']}/{r['SeriesInstanceUID']}/{r['SOPInstanceUID']}.dcm"
        yield name, str(archive.root / r["path"])


def compressor(name: str | None) -> Callable[[str], bytes | None] | None:
    """``compress=`` as a conversion of one file (None: files go as they are)."""
    if name is None or name == "":
        return None
    if name not in COMPRESS:
        raise ValidationError(f"compress={name!r} must be one of {', '.join(COMPRESS)}")
    target = COMPRESS[name]

    def convert(path: str) -> bytes | None:
        import io

        ds = dcmread(path)
        if "PixelData" not in ds or UID(ds.file_meta.TransferSyntaxUID).is_compressed:
            return None
        try:
            ds.compress(target, generate_instance_uid=False)
        except Exception as exc:  # a codec's refusal (tiny images for OpenJPEG): as it is
            log.info("zip: %s kept uncompressed (%s)", path, exc)
            return None
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    return convert


async def download_zip(request: Request) -> Response:
    grant = await _grant(request, "view")
    ctx: WebContext = request.app.state.ctx
    filters = _path_uids(request)
    if "patient" in request.path_params:
        patient = str(request.path_params["patient"])
        if not 0 < len(patient) <= 64 or not patient.isprintable():
            raise _bad("a patient ID is 1-64 printable characters")
        filters["PatientID"] = patient.replace("*", "").replace("?", "")
    scoped = _scoped(grant, filters)
    if scoped is None:
        raise _not_found()
    try:
        convert = compressor(request.query_params.get("compress"))
    except ValidationError as exc:
        raise _bad(str(exc)) from None
    rows = await run_in_threadpool(ctx.archive.index.locate, scoped)
    if not rows:
        raise _not_found()
    name = "dicomlab-" + (
        filters.get("SeriesInstanceUID") or filters.get("StudyInstanceUID") or "patient"
    )
    request.state.counts = {"n_completed": len(rows)}
    return StreamingResponse(
        iterate_in_threadpool(zip_stream(zip_entries(ctx.archive, rows), convert)),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )


# -- viewer and sessions ------------------------------------------------------------------
async def open_link(request: Request) -> Response:
    grant = await _grant(request, "view")
    secret = _secret(request)
    studies = [u for u in request.query_params.get("StudyInstanceUIDs", "").split(",") if u]
    if any(not is_uid(u) for u in studies):
        raise _bad("StudyInstanceUIDs must be UIDs separated by commas")
    if grant.studies is not None and not studies:
        studies = sorted(grant.studies)
    target = "/viewer?StudyInstanceUIDs=" + quote(",".join(studies), safe=",") if studies else "/"
    response = RedirectResponse(target, status_code=303)
    if secret:
        response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", path="/")
    return response


async def login(request: Request) -> Response:
    grant = await _grant(request, "view")
    ctx: WebContext = request.app.state.ctx
    secret = ctx.access.session(grant)
    response = PlainTextResponse(f"logged in as {grant.principal}\n")
    response.set_cookie(
        COOKIE, secret, httponly=True, samesite="strict", path="/", max_age=12 * 3600
    )
    return response


async def logout(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    secret = request.cookies.get(COOKIE)
    if secret:
        ctx.access.forget(secret)  # the session ends here, not only in this browser
    response = PlainTextResponse("logged out\n")
    response.delete_cookie(COOKIE, path="/")
    return response


async def app_config(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    return Response(viewer.app_config(ctx.dicomweb), media_type="application/javascript")


_NO_VIEWER = (
    "<!doctype html><title>dicomlab</title><h1>The OHIF viewer is not installed</h1>"
    "<p>Run <code>make viewer</code> or <code>dicomlab viewer install</code> "
    f"(OHIF {viewer.OHIF_VERSION} from the npm registry), then reload. "
    "DICOMweb is served at <code>/dicom-web</code>.</p>"
)


async def static(request: Request) -> Response:
    dist = viewer.dist()
    if dist is None:
        return HTMLResponse(_NO_VIEWER, status_code=404)
    relative = request.url.path.lstrip("/")
    path = (dist / relative).resolve() if relative else dist / "index.html"
    if not path.is_relative_to(dist.resolve()):
        raise _bad("refusing a path outside the viewer")
    if relative and path.is_file():
        return FileResponse(path)
    return FileResponse(dist / "index.html", media_type="text/html")  # the viewer's own routes


# -- middleware: refuse odd paths, log every request ----------------------------------------
def _service(path: str, method: str, dicomweb: str) -> str | None:
    if path.startswith(dicomweb):
        rest = path[len(dicomweb) :]
        if method == "POST":
            return "STOW-RS"
        searches = ("/studies", "/series", "/instances")
        if rest in searches or rest.endswith(("/series", "/instances")):
            return "QIDO-RS"
        return "WADO-RS"
    if path.startswith("/zip/"):
        return "ZIP"
    if path in ("/", "/open") or path.startswith("/viewer"):
        return "VIEW"
    return None


_STUDY_IN_PATH = re.compile(r"/studies/([0-9.]{1,64})")


class Guard:
    """Pure ASGI middleware: odd paths answer 400 before routing; each request is one
    row of the network log (service, principal, status, bytes, duration; no query)."""

    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        text = raw.decode("latin-1").split("?", 1)[0]
        if len(raw) > _MAX_PATH or _BAD_PATH.search(text) or _LONG_UID.search(text):
            await PlainTextResponse(
                "refused: the path holds '..', an encoded slash or is too long", 400
            )(scope, receive, send)
            return
        service = _service(scope["path"], scope["method"], self.ctx.dicomweb)
        started, t0 = datetime.now(UTC), time.perf_counter()
        seen = {"status": 0, "bytes": 0}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, counting)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            if service is not None:
                state = scope.get("state") or {}
                counts = dict(state.get("counts") or {})
                counts.setdefault("bytes", seen["bytes"])
                match = _STUDY_IN_PATH.search(scope["path"])
                self.ctx.weblog.request(
                    service,
                    seen["status"] or None,
                    started,
                    counts=counts,
                    study=match.group(1) if match else None,
                    error=error,
                    principal=state.get("principal"),
                    duration=time.perf_counter() - t0,
                )


def build_app(ctx: WebContext) -> ASGIApp:
    """The application serving ``ctx``."""
    w = ctx.dicomweb
    study, series, instance = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    one = f"{w}{study}{series}{instance}"
    routes = [
        Route(f"{w}/studies", _qido("STUDY"), methods=["GET"]),
        Route(f"{w}/studies", stow, methods=["POST"]),
        Route(f"{w}/series", _qido("SERIES"), methods=["GET"]),
        Route(f"{w}/instances", _qido("IMAGE"), methods=["GET"]),
        Route(f"{w}{study}", retrieve, methods=["GET"]),
        Route(f"{w}{study}", stow, methods=["POST"]),
        Route(f"{w}{study}/metadata", metadata, methods=["GET"]),
        Route(f"{w}{study}/series", _qido("SERIES"), methods=["GET"]),
        Route(f"{w}{study}/instances", _qido("IMAGE"), methods=["GET"]),
        Route(f"{w}{study}/thumbnail", _picture(True), methods=["GET"]),
        Route(f"{w}{study}/rendered", _picture(False), methods=["GET"]),
        Route(f"{w}{study}{series}", retrieve, methods=["GET"]),
        Route(f"{w}{study}{series}/metadata", metadata, methods=["GET"]),
        Route(f"{w}{study}{series}/instances", _qido("IMAGE"), methods=["GET"]),
        Route(f"{w}{study}{series}/thumbnail", _picture(True), methods=["GET"]),
        Route(f"{w}{study}{series}/rendered", _picture(False), methods=["GET"]),
        Route(one, retrieve, methods=["GET"]),
        Route(f"{one}/metadata", metadata, methods=["GET"]),
        Route(f"{one}/frames/{{frames}}", frames, methods=["GET"]),
        Route(f"{one}/frames/{{frame:int}}/rendered", _picture(False), methods=["GET"]),
        Route(f"{one}/rendered", _picture(False), methods=["GET"]),
        Route(f"{one}/thumbnail", _picture(True), methods=["GET"]),
        Route(f"{one}/bulkdata/{{tag}}", bulkdata, methods=["GET"]),
        Route(f"/zip{study}", download_zip, methods=["GET"]),
        Route(f"/zip{study}{series}", download_zip, methods=["GET"]),
        Route("/zip/patients/{patient}", download_zip, methods=["GET"]),
        Route("/open", open_link, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/app-config.js", app_config, methods=["GET"]),
        Route("/{rest:path}", static, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes)
    app.state.ctx = ctx
    return Guard(app, ctx)
