"""The archive: DICOM files under a root in a readable layout, plus the SQLite index.

Layout: ``ROOT/files/<patient>/<study>/<series>/<instance>.dcm``. Every path
component is derived safely: a valid UID is used as is, anything else becomes
a hash, so no UID or patient ID can ever place a file outside the root.

Consistency: a file is written to a temporary name in its final folder,
flushed (and fsynced unless ``fsync=False``), renamed, and only then indexed.
A crash leaves at worst a ``.tmp`` file, which is removed at the next start.

Duplicates: the same SOP Instance UID received again keeps the first copy,
answers success and is counted (``stats["duplicates"]``).

De-identification: with a :class:`~dicomlab.deid.Deidentifier`, every instance is
rewritten in memory before anything is written, so no identified byte reaches the
disk and the index holds only pseudonyms and new UIDs; one it refuses raises
:class:`~dicomlab.errors.DeidentificationError` with nothing written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom.errors import InvalidDicomError

from dicomlab.core import gather
from dicomlab.core.indexrow import COLUMNS, HeaderError, checked_file, file_header, is_valid_uid
from dicomlab.deid import Deidentifier
from dicomlab.errors import DeidentificationError, ValidationError
from dicomlab.server import writeback
from dicomlab.server.index import Index

__all__ = ["Added", "Archive", "safe_component"]

log = logging.getLogger(__name__)

_SAFE_RE = re.compile(r"[^A-Za-z0-9_-]")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


@functools.lru_cache(maxsize=4096)  # pure; a series' instances share three of four components
def safe_component(value: str, uid: bool = True) -> str:
    """A file-name-safe form of ``value`` that can never leave its folder."""
    if uid and is_valid_uid(value):
        return value
    cleaned = _SAFE_RE.sub("_", value)[:32].strip("_")
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned or 'x'}-{digest}"


@dataclass(frozen=True, slots=True)
class Added:
    """What became of one file given to :meth:`Archive.add_file`."""

    sop_instance_uid: str
    sop_class_uid: str
    status: str
    error: str = ""


class Incoming:
    """The file of an instance still arriving: what came so far written to a temporary
    file in the archive while the rest is read off the socket (the write overlaps the
    wait for the peer's next bytes), then finished at its place once the instance is
    checked (:meth:`finish`), or removed (:meth:`discard`, also after :meth:`finish`:
    then it does nothing).

    ``written`` counts the chunks written so far, the file meta first: :meth:`finish` is
    given the whole file's chunks and writes the rest.
    """

    __slots__ = ("_fd", "_fsync", "_started", "size", "tmp", "written")

    def __init__(self, folder: str, meta: bytes, fsync: bool) -> None:
        self.tmp = os.path.join(folder, f".incoming-{os.getpid()}-{threading.get_ident()}.tmp")
        self._fsync = fsync
        self._fd: int | None = os.open(self.tmp, _CREATE, 0o666)
        self.size = self.written = 0
        self._started = 0  # bytes whose writeback was started (fsync on: writeback.py)
        try:
            with memoryview(meta) as view:
                self.write([view])
        except BaseException:
            self.discard()
            raise

    def write(self, chunks: Sequence[memoryview]) -> None:
        """Append ``chunks`` (views of the caller's, not kept); with fsync on, the disk
        starts writing them at once (:mod:`writeback`)."""
        assert self._fd is not None
        self.size += gather.write_all(functools.partial(os.writev, self._fd), chunks)
        self.written += len(chunks)
        if self._fsync:
            self._started = writeback.start(self._fd, self._started, self.size)

    def finish(self, path: str, chunks: Sequence[bytes | memoryview]) -> int:
        """Write what of ``chunks`` (the whole file's) is not written yet, flush (and
        fsync), and rename the file to ``path``; its size."""
        assert self._fd is not None
        parts = [memoryview(c).cast("B") for c in chunks[self.written :]]
        try:
            self.write(parts)
            if self._fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            try:
                os.replace(self.tmp, path)
            except FileNotFoundError:  # the series folder was removed behind our back
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(self.tmp, path)
        finally:
            for view in parts:
                view.release()
        self.tmp = ""
        return self.size

    def discard(self) -> None:
        """Remove the temporary file, unless :meth:`finish` renamed it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = ""


class Archive:
    """Files plus index under ``root``. Thread-safe."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        deidentify: Deidentifier | None = None,
        clean_temporaries: bool = True,
    ) -> None:
        self.root = Path(root).resolve()
        self.deidentify = deidentify
        self._deid_studies: dict[str, Deidentifier] = {}  # a de-identifying retrieve's
        self.files = self.root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.index = Index(self.root / "index.sqlite")
        self.stats = {"stored": 0, "duplicates": 0, "failed": 0, "bytes": 0}
        self._inflight: set[str] = set()  # SOP Instance UIDs being added
        self._receiving: Counter[str] = Counter()  # study -> instances being received
        self._folders: dict[tuple[str, str, str], str] = {}  # series folders made and checked
        self._root_prefix = len(str(self.root)) + 1  # a path under root, made relative
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)
        self.on_stored: list[Callable[[dict[str, Any]], None]] = []
        """Told of each instance stored (its index row), after it is durably written."""
        if clean_temporaries:  # not in a worker process: its owner may be writing them now
            self._clean_temporaries()

    def close(self) -> None:
        self.index.close()

    def _clean_temporaries(self) -> None:
        for tmp in self.files.rglob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def incoming(self, meta: bytes) -> Incoming | None:
        """A file for an instance still arriving, its ``meta`` written (None: it cannot be
        written early: the archive may de-identify it, or the file cannot be made; then
        :meth:`add` writes it whole)."""
        if self.deidentifies:
            return None
        try:
            return Incoming(str(self.files), meta, self.fsync)
        except OSError as exc:
            log.warning("cannot start writing a received instance early: %s", exc)
            return None

    def path_for(self, row: dict[str, Any]) -> Path:
        """Where an instance lives (always inside ``root/files``)."""
        return Path(self._place(row))

    def _place(self, row: dict[str, Any]) -> str:
        """:meth:`path_for` as a string, its series folder made and checked once.

        Every component is made safe (no separators, no ``..``); as defence in depth the
        series folder is also resolved (symlinks included) and must lie inside the
        archive. That check runs once per series folder, not once per instance (strings,
        not paths: every received instance asks).
        """
        key = (
            str(row.get("PatientID") or "NOID"),
            str(row["StudyInstanceUID"]),
            str(row["SeriesInstanceUID"]),
        )
        folder = self._folders.get(key)
        if folder is None:
            path = (
                self.files
                / safe_component(key[0], uid=False)
                / safe_component(key[1])
                / safe_component(key[2])
            )
            if not path.resolve().is_relative_to(self.files):
                raise HeaderError(f"refusing a path outside the archive: {path}")
            path.mkdir(parents=True, exist_ok=True)
            if not path.resolve().is_relative_to(self.files):  # a symlink raced in
                raise HeaderError(f"refusing a path outside the archive: {path}")
            folder = str(path)
            with self._lock:
                self._folders[key] = folder
        return f"{folder}{os.sep}{safe_component(row['SOPInstanceUID'])}.dcm"

    def _write(self, path: str, chunks: Iterable[bytes | memoryview]) -> int:
        """Write ``chunks`` to ``path`` whole or not at all: a temporary name beside it,
        flushed (and fsynced), then renamed. Returns the size written."""
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
        parts = [memoryview(c).cast("B") for c in chunks]  # released below, whatever happens
        try:
            try:
                fd = os.open(tmp, _CREATE, 0o666)
            except FileNotFoundError:  # the folder was removed behind our back
                os.makedirs(folder, exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o666)
            try:
                size = gather.write_all(functools.partial(os.writev, fd), parts)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            for view in parts:
                view.release()
        return size

    def add(
        self,
        row: dict[str, Any],
        transfer_syntax: str,
        chunks: Iterable[bytes | memoryview],
        source_ae: str = "",
        incoming: Incoming | None = None,
    ) -> str:
        """Write and index one instance. Returns ``"stored"`` or ``"duplicate"``.

        ``chunks`` yields the complete DICOM file (preamble, meta, data set); with
        ``incoming`` (:meth:`incoming`), a sequence of which the leading ones are
        written there already (it is finished or removed, whatever happens).
        Raises ``OSError`` (disk full...) with nothing written or indexed, and
        DeidentificationError when the archive de-identifies and refuses the instance.
        """
        try:
            return self._add(row, transfer_syntax, chunks, source_ae, incoming)
        finally:
            if incoming is not None:
                incoming.discard()

    def _add(
        self,
        row: dict[str, Any],
        transfer_syntax: str,
        chunks: Iterable[bytes | memoryview],
        source_ae: str,
        incoming: Incoming | None,
    ) -> str:
        deid = self.deidentify or self._deid_studies.get(str(row.get("StudyInstanceUID") or ""))
        if deid is not None:
            incoming = None  # a de-identifying retrieve began meanwhile: written anew
            # copies: the rewriter keeps views of its pieces, and ``chunks`` may be views
            # of a socket's buffer, which the receive path frees once this returns
            parts, _ = deid.encoded_parts([bytes(c) for c in chunks])
            head = parts[0]  # the header (or the whole file): bytes, never copied again
            row, transfer_syntax = file_header(head if isinstance(head, bytes) else bytes(head))
            chunks = parts
        uid = row["SOPInstanceUID"]
        path = self._place(row)
        with self._lock:
            # A file already there is a duplicate if the index holds it (a file without its
            # row, left by a crash before the row was written, is written and indexed again).
            # One held under another path is found by the INSERT below.
            if uid in self._inflight or (os.path.exists(path) and self.index.contains(uid)):
                self.stats["duplicates"] += 1
                return "duplicate"
            self._inflight.add(uid)
            self._receiving[str(row.get("StudyInstanceUID") or "")] += 1
        try:
            if incoming is not None:
                size = incoming.finish(path, list(chunks))
            else:
                size = self._write(path, chunks)
            full = dict(row)
            full.update(
                TransferSyntaxUID=transfer_syntax,
                path=path[self._root_prefix :],
                size=size,
                received_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                source_ae=source_ae,
            )
            if not self.index.add(full):  # held under another path, or another process won
                self._drop_unindexed(uid, full["path"])
                with self._lock:
                    self.stats["duplicates"] += 1
                return "duplicate"
            with self._lock:
                self.stats["stored"] += 1
                self.stats["bytes"] += size
            for listener in self.on_stored:
                try:
                    listener(full)
                except Exception:  # a listener's failure never fails the store
                    log.exception("on_stored listener %r failed", listener)
            return "stored"
        finally:
            with self._lock:
                self._inflight.discard(uid)
            self._received(str(row.get("StudyInstanceUID") or ""))

    def _drop_unindexed(self, uid: str, relative: str) -> None:
        """Remove the file just written for ``uid`` unless the index points at it: the
        first copy, kept under another path, stays the only one."""
        if relative not in {p for p, _, _ in self.index.paths({"SOPInstanceUID": uid})}:
            with contextlib.suppress(OSError):
                os.unlink(self.root / relative)
            self._prune([relative])

    def tally(self, delta: dict[str, int]) -> None:
        """Add what a worker process stored into this archive to :attr:`stats`."""
        with self._lock:
            for key, n in delta.items():
                if key in self.stats:
                    self.stats[key] += int(n)

    @property
    def deidentifies(self) -> bool:
        """Whether what arrives now may be de-identified (always, or a de-identifying
        retrieve is running): then no worker process may receive it."""
        return self.deidentify is not None or bool(self._deid_studies)

    @contextmanager
    def deidentifying(self, studies: Iterable[str], deid: Deidentifier) -> Iterator[None]:
        """Instances of ``studies`` (source UIDs) that arrive inside the block are
        de-identified by ``deid`` (a de-identifying retrieve into an archive that does
        not de-identify everything)."""
        wanted = [str(s) for s in studies]
        with self._lock:
            clash = [s for s in wanted if self._deid_studies.get(s, deid) is not deid]
            if clash:
                raise ValidationError(
                    "another retrieve is de-identifying the same study with another "
                    "Deidentifier: wait for it to end"
                )
            for study in wanted:
                self._deid_studies[study] = deid
        try:
            yield
        finally:
            with self._lock:
                for study in wanted:
                    self._deid_studies.pop(study, None)

    def log_uid(self, uid: str) -> str:
        """A UID as this archive's network log may show it: the new UID when everything is
        de-identified, none while a de-identifying retrieve runs, else the UID."""
        if self.deidentify is not None:
            return self.deidentify.new_uid(uid)
        return "" if self._deid_studies else uid

    @contextmanager
    def receiving(self, study: str) -> Iterator[None]:
        """Mark an instance of ``study`` as on its way in (from a C-STORE request's arrival,
        before :meth:`add`), for :meth:`settle`."""
        with self._lock:
            self._receiving[study] += 1
        try:
            yield
        finally:
            self._received(study)

    def _received(self, study: str) -> None:
        with self._lock:
            self._receiving[study] -= 1
            if self._receiving[study] <= 0:
                del self._receiving[study]
            self._added.notify_all()

    def settle(self, study: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no instance of ``study`` is being added; whether
        none is. A retrieve counts what arrived after this: an instance whose sender gave
        up (the association aborted mid-store) may still be on its way to the index."""
        with self._added:
            return self._added.wait_for(lambda: study not in self._receiving, timeout)

    def import_files(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """Copy existing DICOM files (a file or a folder, recursively) into the archive.

        Returns one row per file: ``path``, ``SOPInstanceUID``, ``status``
        (stored, duplicate, not-dicom, invalid, failed) and ``error``. A file whose data set
        does not parse to its end (cut short, for one) or whose meta information names
        another instance is ``invalid``: reported, never indexed.
        """
        src = Path(path)
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        out: list[dict[str, str]] = []
        for f in files:
            try:
                added = self.add_file(f.read_bytes(), source_ae="import")
            except OSError as exc:
                added = Added("", "", "failed", str(exc))
            out.append(
                {
                    "path": str(f),
                    "SOPInstanceUID": added.sop_instance_uid,
                    "status": added.status,
                    "error": added.error,
                }
            )
        return pd.DataFrame(out, columns=["path", "SOPInstanceUID", "status", "error"])

    def add_file(self, data: bytes, source_ae: str, study: str | None = None) -> Added:
        """Check and add one whole DICOM file (an import, a STOW-RS part); never raises
        for the file's own faults: the outcome says ``stored``, ``duplicate``,
        ``not-dicom``, ``invalid`` (cut short, inconsistent, or not of ``study``),
        ``refused`` (de-identification) or ``failed`` (the disk)."""
        uid = klass = ""
        try:
            row, ts, problem = checked_file(data)
            uid, klass = str(row["SOPInstanceUID"]), str(row.get("SOPClassUID") or "")
            if problem is None and study is not None and row.get("StudyInstanceUID") != study:
                problem = (
                    f"the instance belongs to study {row.get('StudyInstanceUID')}, not {study}"
                )
            if problem is not None:
                return Added(uid, klass, "invalid", problem)
            with self.receiving(str(row.get("StudyInstanceUID") or "")):
                return Added(uid, klass, self.add(row, ts, iter([data]), source_ae=source_ae))
        except InvalidDicomError as exc:
            return Added(uid, klass, "not-dicom", str(exc))
        except HeaderError as exc:
            return Added(uid, klass, "invalid", str(exc))
        except DeidentificationError as exc:
            return Added(uid, klass, "refused", f"not de-identified: {', '.join(exc.attributes)}")
        except OSError as exc:
            return Added(uid, klass, "failed", f"cannot write the file: {exc.strerror or exc}")

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def instances(self) -> pd.DataFrame:
        """One row per instance held (index columns; ``path`` is absolute)."""
        cols = list(COLUMNS)
        df = pd.DataFrame(self.index.rows(cols), columns=cols)
        df["path"] = [str(self.root / p) for p in df["path"]]
        df["size"] = df["size"].astype("int64")
        # ISO 8601 as written; pandas cannot guess the format of some times (e.g. 20:26:14Z)
        df["received_at"] = pd.to_datetime(df["received_at"], utc=True, format="ISO8601")
        return df

    def studies(self) -> pd.DataFrame:
        """One row per study with its counts and modalities."""
        rows = list(self.index.find("STUDY", {}, root="PATIENT"))
        cols = [
            "PatientID",
            "PatientName",
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "StudyDescription",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ]
        df = pd.DataFrame(rows, columns=cols)
        df["ModalitiesInStudy"] = df["ModalitiesInStudy"].fillna("").str.replace(",", "\\")
        return df

    def delete_study(self, study_instance_uid: str) -> int:
        """Delete a study's files and index rows; returns how many instances went."""
        return self._delete('"StudyInstanceUID" = ?', study_instance_uid)

    def delete_instance(self, sop_instance_uid: str) -> int:
        """Delete one instance's file and index row; returns 1, or 0 when not held."""
        return self._delete('"SOPInstanceUID" = ?', sop_instance_uid)

    def _delete(self, where: str, uid: str) -> int:
        paths = self.index.delete(where, [uid])
        for rel in paths:
            (self.root / rel).unlink(missing_ok=True)
        self._prune(paths)
        return len(paths)

    def _prune(self, removed: Iterable[str]) -> None:
        """Remove the series, study and patient folders that the files ``removed``
        (relative paths) leave empty, nearest first; a folder still holding anything
        stays, and so do the ones above it. A store racing into a pruned folder makes it
        again (:meth:`_write`)."""
        with self._lock:
            self._folders.clear()  # cached series folders may be gone
        for rel in {str(Path(p).parent) for p in removed}:
            folder = self.root / rel
            for d in (folder, folder.parent, folder.parent.parent):
                if d == self.files or not d.is_relative_to(self.files):
                    break
                try:
                    d.rmdir()
                except OSError:
                    break
