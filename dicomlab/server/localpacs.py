"""LocalPACS: a complete small PACS in background threads.

Verification, Storage (every storage SOP class, any transfer syntax, stored as
received), Query/Retrieve FIND, MOVE and GET in the Patient Root and Study
Root models, over its own :class:`~dicomlab.server.archive.Archive`, and a Modality
Worklist (:attr:`LocalPACS.worklist`).

Access control: callers whose AE title is in ``book`` get that node's
permissions (``allow_store``, ``allow_query``, ``allow_retrieve``); others may
use only the services in ``allow_unknown`` (default: echo). C-MOVE destinations
are the book's nodes; this process's own connections may do anything.
``max_associations`` bounds concurrent associations (callers past it are rejected,
"local limit exceeded"); connections that have not asked for one yet are bounded
apart (:mod:`dicomlab.server.gate`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

import pandas as pd
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomlab.core import commitment
from dicomlab.core.dicomweb import DICOMweb
from dicomlab.core.findlimit import FindLimit
from dicomlab.core.models import QR_UIDS
from dicomlab.core.nodebook import NodeBook, home
from dicomlab.core.nodes import TLS, Node, validate_host, validate_port
from dicomlab.deid import Deidentifier
from dicomlab.errors import ConfigError, DicomlabError, ValidationError
from dicomlab.log.record import record_of
from dicomlab.log.web import WebLog
from dicomlab.log.writer import folder as log_folder
from dicomlab.net import commit as commit_scu
from dicomlab.net.trust import is_own_connection
from dicomlab.server import handlers
from dicomlab.server.archive import Archive
from dicomlab.server.commitment import Reporter, handle_n_action
from dicomlab.server.gate import PendingLimits
from dicomlab.server.lifecycle import ServerThread, running_servers
from dicomlab.server.listener import weak
from dicomlab.server.web import viewer
from dicomlab.server.web.access import Access
from dicomlab.server.web.dicomjson import is_uid
from dicomlab.server.workers import VERIFICATION, WorkerConfig, Workers, storage_request
from dicomlab.server.worklist import OnArrival, Worklist

__all__ = ["LocalPACS", "ensure_listener"]

log = logging.getLogger(__name__)


def _services(allow: Iterable[str] | str) -> frozenset[str]:
    if isinstance(allow, str):
        allow = [allow]
    services = frozenset(allow)
    if services & {"*", "all"}:
        services = frozenset(handlers.SERVICES)
    bad = services - set(handlers.SERVICES)
    if bad:
        raise ValidationError(
            f"allow_unknown {sorted(bad)!r} not among the services {list(handlers.SERVICES)}"
        )
    return services


_MAX_PDU = 131072
"""The PDU size LocalPACS offers: dcmtk's largest (its senders cap at 128 KB and treat
"no limit" as 16 KB); eight times fewer PDUs per instance than the usual 16 KB."""


@dataclass(frozen=True, slots=True)
class Caller:
    """A peer that associated with a LocalPACS."""

    at: float  # time.time()
    ae_title: str
    address: str


class LocalPACS(ServerThread):
    """A small PACS serving its own archive under ``root``.

    Parameters
    ----------
    root
        Folder for files and the index (created if needed).
    ae_title, port, host
        Our identity; ``port=0`` picks a free port (see :attr:`port`).
    book
        Known nodes: their permissions, and C-MOVE destinations.
    allow_unknown
        Services callers not in the book may use: any of ``echo``, ``store``,
        ``find``, ``move``, ``get``, or ``"all"``.
    max_associations
        Concurrent associations served; further ones are rejected.
    fsync
        fsync each received file before answering success (default on).
    tls, tls_port
        Serve TLS too: ``tls`` holds our certificate and key (and ``ca`` with
        ``require_client_cert=True`` to demand client certificates); ``tls_port``
        defaults to 2762, the port registered for DICOM over TLS.
    pending
        Bounds on connections that have not sent their A-ASSOCIATE-RQ yet
        (:class:`dl.PendingLimits`: how many in all and per address, and how long each
        may take). They do not count against ``max_associations``; past a bound the
        oldest is dropped, so a flood of idle connections never locks callers out.

    idle_timeout
        Seconds an association may stay silent both ways before it is aborted.
    deidentify
        A :class:`dl.Deidentifier`: everything received (C-STORE, C-GET and C-MOVE
        into it, WADO-RS, imports) is de-identified in memory before anything is
        written; the index and the network log hold only pseudonyms and new UIDs. An
        instance it refuses is answered with a failure status, nothing written.
    web_port, web_host
        Serve the web side too (``web_port=0`` picks a free port; None, the default:
        no web port): DICOMweb at ``/dicom-web`` (QIDO-RS, WADO-RS, STOW-RS over this
        archive), the OHIF viewer at the root, zip downloads at ``/zip``. It binds to
        ``web_host`` (default: ``host``, loopback unless said otherwise) and serves
        HTTPS with ``tls``'s files. Every request but the viewer's own files needs a
        web user (:meth:`add_web_user`) or a token (:meth:`share`, :meth:`viewer_url`).
    find_limit
        Cap C-FIND answers as many archives do (a :class:`dl.FindLimit`, or a number
        of matches: then cancelled past it, status 0xFE00), to show or test what a
        capped archive does; QIDO-RS is not capped.
    workers
        Worker processes receiving storage associations on the other cores (0, the default:
        this process serves everything). The LocalPACS still accepts and admits every
        association; one that asks only for storage is handed, connection and all, to the
        least busy worker, which writes into the same archive and index. Queries,
        retrieves, worklist, storage commitment, TLS, the web side and this process's own
        connections stay here (:mod:`dicomlab.server.workers`). ``"auto"``: one per core.
        Not with ``deidentify``.
    worklist_on_arrival
        What a stored study does to the worklist items of its accession number:
        ``"done"`` (no longer served), ``"remove"`` or ``"keep"``
        (:attr:`worklist`, a :class:`dicomlab.server.worklist.Worklist`).

    Connections that this Python process opens itself (``dl.store(local.node, ...)``,
    ``dl.find``, ``dl.retrieve``, a QueryPanel) may use every service with no
    configuration: they are recognised by the connection, never by AE title.
    """

    _default: ClassVar[LocalPACS | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def default(cls, book: NodeBook | None = None) -> LocalPACS:
        """The kernel's default LocalPACS, where ``dl.retrieve`` puts what it fetches when
        given no ``into``: ``home()/archive`` with the book's local AE title, host and port,
        started on first use (and again if it was stopped). It is stopped like any
        other LocalPACS (``dl.LocalPACS.default().stop()``, or at interpreter exit)."""
        with cls._default_lock:
            lp = cls._default
            if lp is None or not lp.running:
                book = book if book is not None else NodeBook.load()
                lp = cls(
                    home() / "archive",
                    ae_title=book.local.ae_title,
                    port=book.local.port,
                    host=book.local.host,
                    book=book,
                )
                lp.start()
                cls._default = lp
            return lp

    def __init__(
        self,
        root: str | os.PathLike[str],
        ae_title: str = "DICOMLAB",
        port: int = 11112,
        host: str = "127.0.0.1",
        book: NodeBook | None = None,
        allow_unknown: Iterable[str] | str = ("echo",),
        max_associations: int = 16,
        fsync: bool = True,
        tls: TLS | None = None,
        tls_port: int | None = None,
        pending: PendingLimits | None = None,
        idle_timeout: float = 60.0,
        deidentify: Deidentifier | None = None,
        worklist_on_arrival: OnArrival = "done",
        web_port: int | None = None,
        web_host: str | None = None,
        find_limit: FindLimit | int | None = None,
        workers: int | str = 0,
    ) -> None:
        if deidentify is not None and not isinstance(deidentify, Deidentifier):
            raise ValidationError(f"deidentify={deidentify!r} must be a dl.Deidentifier")
        n_workers = _worker_count(workers)
        if n_workers and deidentify is not None:
            raise ConfigError(
                "workers= cannot be used with deidentify= (a worker process would have to "
                "hold the secret and the pseudonym map)",
                hint="de-identify in this process (workers=0), or on the way in dl.retrieve",
            )
        super().__init__(
            ae_title,
            host,
            port,
            tls=tls,
            tls_port=tls_port,
            pending=pending,
            idle_timeout=idle_timeout,
        )
        if not 1 <= max_associations <= 1000:
            raise ValidationError(f"max_associations {max_associations!r} must be in 1-1000")
        self.archive = Archive(
            root, fsync=fsync, deidentify=deidentify, clean_temporaries=self.accepts
        )
        self.deidentify = deidentify
        self.worklist = Worklist(self.archive.root / "worklist.json", worklist_on_arrival)
        self.archive.on_stored.append(self.worklist.arrived)
        self.book = book
        if isinstance(find_limit, int) and not isinstance(find_limit, bool):
            find_limit = FindLimit(find_limit)
        if find_limit is not None and not isinstance(find_limit, FindLimit):
            raise ValidationError(
                f"find_limit={find_limit!r} must be a dl.FindLimit, a number or None"
            )
        self.policy = handlers.Policy(book, _services(allow_unknown), find_limit=find_limit)
        self.commitment = Reporter(ae_title, self.archive.index.sop_class_of)
        self.max_associations = max_associations
        self.web_access = Access(self.archive.root / "web.json")
        self._web_port = None if web_port is None else validate_port(web_port, allow_zero=True)
        self._web_host = validate_host(web_host) if web_host is not None else self.host
        self._web: Any = None  # a dicomlab.server.web.runner.WebServer while serving
        self._owner_secret: str | None = None
        self.counters = {"associations": 0, "rejected": 0, "aborted": 0, "to_workers": 0}
        self._callers: deque[Caller] = deque(maxlen=64)
        self._count_lock = threading.Lock()
        self.workers = n_workers
        self._pool: Workers | None = None

    def __repr__(self) -> str:
        state = f"port {self.port}" if self.running else "stopped"
        if self.running and self.tls is not None:
            state += f", TLS port {self.tls_port}"
        return f"LocalPACS({self.ae_title!r}, {state}, root={str(self.archive.root)!r})"

    # -- server wiring -------------------------------------------------------------
    def _configure(self, ae: AE) -> None:
        ae.maximum_pdu_size = _MAX_PDU
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            # Any transfer syntax, stored as received; SCP role accepted for C-GET.
            ae.add_supported_context(
                str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        for uid in sorted(QR_UIDS):
            ae.add_supported_context(uid)
        # Storage commitment: as the SCP (N-ACTION), and as the SCU a report reaches on
        # a new association (the PACS then proposes the SCP role).
        ae.add_supported_context(commitment.PUSH_MODEL, scu_role=True, scp_role=True)

    def _max_associations(self) -> int:
        return self.max_associations

    # -- worker processes ----------------------------------------------------------------
    def _dispatcher(self) -> Any:
        if not self.workers:
            return None
        return weak(self._offer, gone=False)  # the listener must not keep us alive

    def _served_elsewhere(self) -> int:
        pool = self._pool
        return pool.busy if pool is not None else 0

    def _offer(self, sock: Any, address: Any) -> bool:
        """Hand a storage-only association to a worker process, when one may serve it."""
        pool = self._pool
        if pool is None or not pool.ready or self.archive.deidentifies:
            return False
        if is_own_connection(sock):
            return False  # ours may do anything: served here, where that is known
        rq = storage_request(sock)
        if rq is None:
            return False
        calling, policy = rq.calling_ae, self.policy
        if not self._known_or_welcome(calling):
            return False  # rejected here
        if not policy.permits(calling, "store"):
            return False  # refused here, instance by instance
        if VERIFICATION in rq.abstract_syntaxes and not policy.permits(calling, "echo"):
            return False
        with self._admit_lock:
            here = self._serving_here()
        if here + pool.busy >= self.max_associations:
            return False  # rejected here: local limit exceeded
        if not pool.offer(sock, address):
            return False
        with self._count_lock:
            self.counters["to_workers"] += 1
        return True

    def _worker_report(self, message: dict[str, Any]) -> None:
        """A worker ended a connection: its counters, its caller, its arrivals."""
        self.archive.tally(message.get("stats") or {})
        outcome, ae = str(message.get("outcome") or ""), str(message.get("ae") or "")
        address = message.get("address") or ["", 0]
        established = outcome in ("released", "aborted")
        self._counted(Caller(time.time(), ae, str(address[0])) if established else None, outcome)
        for accession in message.get("accessions") or ():
            self.worklist.arrived({"AccessionNumber": accession})

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the worker processes (empty without ``workers``)."""
        pool = self._pool
        return pool.pids if pool is not None else []

    def wait_for_workers(self, timeout: float = 30.0) -> bool:
        """Wait until every worker process is ready to receive; whether they are (without
        workers: True). Until then this process serves every connection itself."""
        pool = self._pool
        return pool.wait_ready(timeout) if pool is not None else True

    def _calling_allowed(self, assoc: Any) -> bool:
        """With a book and no service for strangers, only the book's AE titles (and this
        process's own connections) may associate."""
        calling = str(assoc.requestor.ae_title).strip()
        return self._known_or_welcome(calling) or handlers.own_connection(assoc)

    def _known_or_welcome(self, calling: str) -> bool:
        """Whether ``calling`` may associate by its AE title: anyone may without a book or
        when strangers may use a service, else only the book's AE titles."""
        if self.book is None or self.policy.allow_unknown:
            return True
        return self.book.find_ae(calling) is not None

    def _handlers(self) -> list[Any]:
        p, a = self.policy, self.archive
        return [
            (evt.EVT_C_ECHO, handlers.handle_echo, [p]),
            (evt.EVT_C_STORE, handlers.handle_store, [a, p]),
            (evt.EVT_C_FIND, handlers.handle_find, [a, p, self.worklist]),
            (evt.EVT_C_MOVE, handlers.handle_move, [a, p]),
            (evt.EVT_C_GET, handlers.handle_get, [a, p]),
            (evt.EVT_N_ACTION, handle_n_action, [p, self.commitment]),
            (evt.EVT_N_EVENT_REPORT, commit_scu.report_received),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_RELEASED, self._on_released),
        ]

    def _on_established(self, event: Any) -> None:
        requestor = event.assoc.requestor
        caller = Caller(time.time(), str(requestor.ae_title).strip(), str(requestor.address or ""))
        self._counted(caller, "")
        rec = record_of(event.assoc)
        if rec is not None:
            rec.redact = self.archive.log_uid  # de-identified: never a source UID in the log

    def _on_rejected(self, event: Any) -> None:
        self._counted(None, "rejected")

    def _on_aborted(self, event: Any) -> None:
        self._counted(None, "aborted")
        self._flush_map()

    def _counted(self, caller: Caller | None, outcome: str) -> None:
        """An association in the counters (here or in a worker process): ``caller`` once
        it is established, ``outcome`` "rejected" or "aborted" when it ended so."""
        with self._count_lock:
            if caller is not None:
                self.counters["associations"] += 1
                self._callers.append(caller)
            if outcome in ("rejected", "aborted"):
                self.counters[outcome] += 1

    def _on_released(self, event: Any) -> None:
        self._flush_map()

    def _flush_map(self) -> None:
        """Write the pseudonym map's new entries (after each association, and at stop):
        what was stored can always be re-identified by the secret's holder."""
        if self.deidentify is not None:
            try:
                self.deidentify.flush()
            except OSError as exc:
                log.error("cannot write the pseudonym map %s: %s", self.deidentify.map.folder, exc)

    def start(self) -> Self:
        """Start listening (DIMSE, and the web port when asked); a second call is a no-op.
        Worker processes (``workers``) start in the background (:meth:`wait_for_workers`)."""
        super().start()
        if self.workers and self._pool is None:
            logs = log_folder()
            config = WorkerConfig(
                str(self.archive.root),
                self.ae_title,
                self.archive.fsync,
                self.idle_timeout,
                str(logs) if logs is not None else None,
            )
            # nor the pool's readers: they hold our report weakly
            pool = Workers(self.workers, config, weak(self._worker_report, gone=None))
            try:
                pool.start()
            except BaseException:
                super().stop()
                raise
            self._pool = pool
        if self._web_port is not None and self._web is None:
            from dicomlab.server.web.app import WebContext  # Starlette: only when serving
            from dicomlab.server.web.runner import WebServer

            scheme = "https" if self.tls is not None else "http"
            url = f"{scheme}://{self._web_host}:{self._web_port}"
            ctx = WebContext(self.archive, self.web_access, WebLog(url, "SCP", self.ae_title))
            web = WebServer(ctx, self._web_host, self._web_port, self.tls)
            try:
                web.start()
            except BaseException:
                super().stop()
                raise
            self._web = web
            self._owner_secret = self.web_access.ephemeral(None)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        web, self._web = self._web, None
        pool, self._pool = self._pool, None
        deadline = time.monotonic() + timeout
        try:
            if web is not None:
                web.stop(timeout)
            super().stop(max(0.5, deadline - time.monotonic()) / (2 if pool else 1))
            if pool is not None:
                pool.stop(max(0.5, deadline - time.monotonic()))
        finally:
            self.commitment.stop(timeout)
            self._flush_map()

    def callers(self, since: float = 0.0) -> list[Caller]:
        """The peers that associated with this LocalPACS (the last 64), from ``since``
        (a ``time.time()``) on: who they said they were and where they came from."""
        with self._count_lock:
            return [c for c in self._callers if c.at >= since]

    @property
    def node(self) -> Node:
        """A :class:`Node` pointing at this LocalPACS (retrieve by C-GET: needs no registration)."""
        return super().node.replace(name=self.ae_title.lower()[:64] or "local", retrieve="get")

    # -- web --------------------------------------------------------------------------------
    def _web_running(self) -> Any:
        if self._web is None or not self._web.running:
            raise ConfigError(
                f"{self.ae_title} serves no web port",
                hint="start it with dl.LocalPACS(root, web_port=0) (0 picks a free port)",
            )
        return self._web

    @property
    def serves_web(self) -> bool:
        """Whether the web port is being served now."""
        return self._web is not None and bool(self._web.running)

    @property
    def web_url(self) -> str:
        """The web port's root, e.g. ``http://127.0.0.1:8042`` (the viewer)."""
        return str(self._web_running().url)

    @property
    def web_port(self) -> int:
        return int(self._web_running().port)

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root: ``web_url + "/dicom-web"``."""
        return self.web_url + "/dicom-web"

    @property
    def web_node(self) -> Node:
        """A DICOMweb :class:`Node` for this LocalPACS, holding this process's own token
        (valid while it serves; never written to a book)."""
        secret = self._owner_secret
        self._web_running()
        assert secret is not None
        ca = self.tls.ca if self.tls is not None else None
        web = DICOMweb(self.dicomweb_url, auth="bearer", token=lambda: secret, ca=ca)
        return Node(f"{self.ae_title.lower()}-web"[:64], dicomweb=web)

    def viewer_url(self, study: str | Iterable[str] | None = None) -> str:
        """A link that opens the OHIF viewer on ``study`` (a Study Instance UID or several;
        None: the study list), for this kernel's user: it holds a token valid while this
        LocalPACS serves (at most a day), seeing those studies only."""
        viewer.require()
        studies = _uids(study)
        secret = self.web_access.ephemeral(frozenset(studies) if studies else None)
        return self._link(secret, studies)

    def _link(self, secret: str, studies: list[str]) -> str:
        query = {"token": secret}
        if studies:
            query["StudyInstanceUIDs"] = ",".join(studies)
        return f"{self.web_url}/open?{urlencode(query, safe=',')}"

    def share(
        self,
        study: str | Iterable[str],
        days: float = 7.0,
        *,
        from_study_date: bool = False,
        label: str = "",
    ) -> str:
        """A share link (viewer and zip download) for ``study`` only, valid ``days`` from
        now, or from the study's date with ``from_study_date=True`` (as desktop PACS do
        for patients). The token is stored hashed in ``root/web.json``; revoke it with
        :meth:`revoke` (the id is in :meth:`shares`)."""
        studies = _uids(study)
        if not studies:
            raise ValidationError("share() needs at least one Study Instance UID")
        if not 0 < days <= 3650:
            raise ValidationError(f"days={days!r} must be in (0, 3650]")
        start = time.time()
        asked = {"StudyInstanceUID": "\\".join(studies)}
        found = {m["StudyInstanceUID"]: m for m in self.archive.index.find("STUDY", asked)}
        missing = [u for u in studies if u not in found]
        if missing:
            raise ValidationError(f"study {missing[0]} is not in this archive")
        if from_study_date:
            dates = [str(found[u].get("StudyDate") or "") for u in studies]
            if not all(len(d) == 8 and d.isdigit() for d in dates):
                raise ValidationError("from_study_date=True needs every study to have a StudyDate")
            start = min(time.mktime(time.strptime(d, "%Y%m%d")) for d in dates)
        _, secret = self.web_access.share(tuple(studies), start + days * 86_400, label)
        return self._link(secret, studies)

    def revoke(self, token_id: str) -> None:
        """Revoke a share link by its token's id (see :meth:`shares`)."""
        self.web_access.revoke(token_id)

    def shares(self) -> pd.DataFrame:
        """The share links made: id, studies, label, created, expires, state."""
        rows = self.web_access.describe()
        df = pd.DataFrame(rows, columns=["id", "studies", "label", "created", "expires", "state"])
        for col in ("created", "expires"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        return df

    def add_web_user(self, name: str, password: str, role: str = "view") -> None:
        """A web user: ``view`` (query, retrieve, download, viewer), ``upload`` (and
        STOW-RS) or ``admin``; the password is kept as an scrypt hash."""
        self.web_access.add_user(name, password, role)  # type: ignore[arg-type]

    def export_zip(
        self,
        what: str | Iterable[str],
        path: str | os.PathLike[str],
        *,
        level: str = "study",
        compress: str | None = None,
    ) -> Path:
        """Write a zip of studies (``level="study"``, the default), series or patients
        (``level="series"``/``"patient"``; ``what`` their UIDs or IDs) to ``path``,
        written to a temporary name and renamed when complete. ``compress``:
        ``"jpeg-ls"``, ``"jpeg2000"`` or ``"rle"`` for lossless compressed copies."""
        keys = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "patient": "PatientID"}
        if level not in keys:
            raise ValidationError(f"level={level!r} must be study, series or patient")
        from dicomlab.server.web.app import compressor, zip_entries
        from dicomlab.server.web.zipstream import zip_stream

        values = [what] if isinstance(what, str) else [str(v) for v in what]
        convert = compressor(compress)
        rows = [r for v in values for r in self.archive.index.locate({keys[level]: v})]
        if not rows:
            raise ValidationError(f"nothing in this archive matches {level} {values[:3]}")
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            with open(tmp, "wb") as fh:
                for chunk in zip_stream(zip_entries(self.archive, rows), convert):
                    fh.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    # -- archive ----------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, int]:
        """Counters: stored, duplicates, failed, bytes, associations, rejected, aborted,
        ``to_workers`` (connections handed to worker processes), and connections
        ``pending`` (waiting for their request now) and ``dropped``."""
        return {
            **self.archive.stats,
            **self.counters,
            **self.commitment.counters,
            **self.connection_counters,
        }

    def instances(self) -> pd.DataFrame:
        """One row per instance held."""
        return self.archive.instances()

    def studies(self) -> pd.DataFrame:
        """One row per study held, with counts and modalities."""
        return self.archive.studies()

    def import_files(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """Copy existing DICOM files into the archive; one outcome row per file."""
        return self.archive.import_files(Path(path))

    def delete_study(self, study_instance_uid: str) -> int:
        """Delete one study (files and index rows); returns how many instances went."""
        return self.archive.delete_study(study_instance_uid)

    def delete_instance(self, sop_instance_uid: str) -> int:
        """Delete one instance (its file and index row); returns 1, or 0 when not held."""
        return self.archive.delete_instance(sop_instance_uid)


def _worker_count(workers: int | str) -> int:
    if workers == "auto":
        return max(1, min(64, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise ValidationError(f"workers={workers!r} must be a number in 0-64 or 'auto'")
    return workers


def _uids(what: str | Iterable[str] | None) -> list[str]:
    if what is None:
        return []
    values = [what] if isinstance(what, str) else [str(v) for v in what]
    bad = [v for v in values if not is_uid(v)]
    if bad:
        raise ValidationError(f"{bad[0][:80]!r} is not a Study Instance UID")
    return list(dict.fromkeys(values))


def ensure_listener(book: NodeBook | None = None) -> LocalPACS | None:
    """A LocalPACS of this process that is running: the first one, else the default one
    started (where a PACS's storage commitment report on a new association arrives).
    None, with a warning, when the default one cannot start (its port taken): a report
    on the requesting association still arrives."""
    for server in running_servers():
        if isinstance(server, LocalPACS):
            return server
    try:
        return LocalPACS.default(book)
    except (DicomlabError, OSError) as exc:
        log.warning("no LocalPACS to receive a storage commitment report on: %s", exc)
        return None
