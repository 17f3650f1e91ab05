"""Real DICOM peers for demos, teaching, tests and benchmarks: dcmtk and Orthanc
processes on loopback, and ``dicomlab serve`` in a process of its own.

Each peer binds 127.0.0.1 on a free port, writes into its own folder, and is
stopped by PID (never by process name). Use them as context managers::

    with StoreSCP(tmp_path) as scp:
        dl.echo(scp.node)
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dicomlab.core.nodes import Node

__all__ = [
    "DICOMWEB_PLUGIN",
    "DcmQRSCP",
    "Orthanc",
    "Peer",
    "PeerMissing",
    "Serve",
    "SilentListener",
    "StoreSCP",
    "WlmSCPFS",
    "free_port",
    "peer_env",
    "require_binary",
    "require_file",
    "wait_for_port",
]

log = logging.getLogger(__name__)


class PeerMissing(RuntimeError):
    """A peer program is not installed."""


def require_binary(name: str) -> str:
    """Path of an installed program, or :class:`PeerMissing` naming the Debian package."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        package = _PACKAGES.get(name, "dcmtk")
        raise PeerMissing(
            f"{name} is not installed (apt-get install {package}; or run make test as root)"
        )
    return path


_PACKAGES = {"Orthanc": "orthanc", "dciodvfy": "dicom3tools"}
"""The Debian package of each peer program that is not dcmtk's."""

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def require_file(path: str, package: str) -> str:
    """``path`` if it exists, else :class:`PeerMissing` naming the Debian package."""
    if not Path(path).exists():
        raise PeerMissing(
            f"{path} is missing (apt-get install {package}; or run make test as root)"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a child by PID: SIGTERM (it may shut its own children down), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def peer_env() -> dict[str, str]:
    """Environment for dcmtk and Orthanc: Nagle off (Debian's dcmtk leaves it on otherwise)."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


class Peer:
    """A peer process: started on enter, stopped by PID on exit (idempotent)."""

    name = "peer"

    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        self.workdir = Path(workdir).resolve()  # the peer runs in it: paths must not be relative
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ready(self) -> None:
        assert self.proc is not None
        wait_for_port(self.port, proc=self.proc)

    def start(self) -> Self:
        if self.proc is not None:
            return self
        cmd = self.command()
        log.debug("starting %s: %s", self.name, " ".join(cmd))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=peer_env(),
                cwd=self.workdir,
            )
        try:
            self.ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def log_text(self) -> str:
        """What the peer printed (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class StoreSCP(Peer):
    """dcmtk ``storescp``: accepts C-ECHO and C-STORE, writes files into ``workdir/in``;
    every transfer syntax (``+xa``), or with ``accept_all=False`` the uncompressed ones
    only (storescp's default)."""

    name = "storescp"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        ae_title: str = "STORESCP",
        extra: Iterable[str] = (),
        accept_all: bool = True,
    ) -> None:
        super().__init__(workdir)
        self.ae_title = ae_title
        self.extra = list(extra)
        self.accept_all = accept_all
        self.output = self.workdir / "in"
        self.output.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [
            require_binary("storescp"),
            "--aetitle",
            self.ae_title,
            "--output-directory",
            str(self.output),
            *(["+xa"] if self.accept_all else []),
            *self.extra,
            str(self.port),
        ]

    @property
    def node(self) -> Node:
        return Node(
            "storescp", ae_title=self.ae_title, host="127.0.0.1", port=self.port, timeout=10
        )


class Serve(Peer):
    """``dicomlab serve`` in a process of its own (a LocalPACS as a user runs it from a
    terminal), its archive in ``workdir/root``; ``extra``: more of its options."""

    name = "dicomlab-serve"

    def __init__(
        self, workdir: str | os.PathLike[str], ae_title: str = "DICOMLAB", extra: Iterable[str] = ()
    ) -> None:
        super().__init__(workdir)
        self.ae_title = ae_title
        self.extra = list(extra)
        self.root = self.workdir / "root"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "dicomlab.cli", "serve", "--root", str(self.root)),
            *("--port", str(self.port), "--ae", self.ae_title, *self.extra),
        ]

    def ready(self) -> None:
        assert self.proc is not None
        wait_for_port(self.port, timeout=60, proc=self.proc)  # a TCP probe: no association

    @property
    def node(self) -> Node:
        return Node("serve", ae_title=self.ae_title, host="127.0.0.1", port=self.port, timeout=10)


class DcmQRSCP(Peer):
    """dcmtk ``dcmqrscp``: a query/retrieve SCP over files indexed with ``dcmqridx``.

    ``move_destinations`` maps AE titles to ports on 127.0.0.1 it may C-MOVE to.
    """

    name = "dcmqrscp"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        ae_title: str = "DCMQRSCP",
        files: Iterable[str | os.PathLike[str]] = (),
        move_destinations: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.ae_title = ae_title
        self.db = self.workdir / "db"
        self.db.mkdir(exist_ok=True)
        self.move_destinations = dict(move_destinations or {})
        self.config = self.workdir / "dcmqrscp.cfg"
        names = [str(f) for f in files]
        if names:
            self.index(names)

    def index(self, files: list[str]) -> None:
        """Add files to the database with ``dcmqridx`` (in batches)."""
        exe = require_binary("dcmqridx")
        for i in range(0, len(files), 200):
            subprocess.run(
                [exe, str(self.db), *files[i : i + 200]],
                check=True,
                env=peer_env(),
                capture_output=True,
            )

    def command(self) -> list[str]:
        hosts = "\n".join(
            f"dest{i} = ({ae}, 127.0.0.1, {port})"
            for i, (ae, port) in enumerate(self.move_destinations.items())
        )
        self.config.write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 65536\nMaxAssociations = 16\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{self.ae_title} {self.db} RW (500, 1024mb) ANY\nAETable END\n"
        )
        # -Cr +U8: always answer in UTF-8 (dcmtk 3.6.7 crashes converting non-ASCII
        # names to the default ASCII repertoire a query without charset asks for).
        return [
            require_binary("dcmqrscp"),
            "-Cr",
            "+U8",
            "-c",
            str(self.config),
            str(self.port),
        ]

    @property
    def node(self) -> Node:
        return Node(
            "dcmqrscp", ae_title=self.ae_title, host="127.0.0.1", port=self.port, timeout=10
        )


class WlmSCPFS(Peer):
    """dcmtk ``wlmscpfs``: a Modality Worklist SCP over the ``.wl`` files in
    :attr:`folder` (``workdir/worklists/<AE title>``, with the ``lockfile`` it needs),
    answering with the files' character set (``-csk``)."""

    name = "wlmscpfs"

    def __init__(self, workdir: str | os.PathLike[str], ae_title: str = "WLMSCPFS") -> None:
        super().__init__(workdir)
        self.ae_title = ae_title
        self.folder = self.workdir / "worklists" / ae_title
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "lockfile").touch()

    def command(self) -> list[str]:
        return [
            require_binary("wlmscpfs"),
            "-csk",
            "--data-files-path",
            str(self.folder.parent),
            str(self.port),
        ]

    @property
    def node(self) -> Node:
        return Node(
            "wlmscpfs", ae_title=self.ae_title, host="127.0.0.1", port=self.port, timeout=10
        )


class Orthanc(Peer):
    """An Orthanc server with its own configuration (loopback, temporary storage).

    Parameters
    ----------
    modalities
        ``DicomModalities``: AE title -> (host, port), the nodes it knows (C-MOVE targets).
    check_called_aet
        Reject associations whose called AE title is not Orthanc's.
    allow_unknown
        When False, all ``DicomAlwaysAllow*`` are off: only known modalities may associate.
    config
        Extra configuration keys.
    dicomweb
        Load the DICOMweb plugin (Debian's ``orthanc-dicomweb``): QIDO-RS, WADO-RS and
        STOW-RS under :attr:`dicomweb_url`.
    """

    name = "orthanc"

    @classmethod
    def knowing(cls, workdir: str | os.PathLike[str], *nodes: Node, **options: Any) -> Orthanc:
        """An Orthanc that knows ``nodes`` (e.g. ``local.node``) as its modalities, so that
        it can C-MOVE to them."""
        return cls(workdir, modalities={n.ae_title: (n.host, n.port) for n in nodes}, **options)

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        ae_title: str = "ORTHANC",
        modalities: Mapping[str, tuple[str, int]] | None = None,
        check_called_aet: bool = False,
        allow_unknown: bool = True,
        config: Mapping[str, Any] | None = None,
        dicomweb: bool = False,
    ) -> None:
        super().__init__(workdir)
        self.ae_title = ae_title
        self.dicomweb = dicomweb
        self.http_port = free_port()
        self.config_path = self.workdir / "orthanc.json"
        modal = {
            ae: {
                "AET": ae,
                "Host": host,
                "Port": port,
                "AllowEcho": True,
                "AllowFind": True,
                "AllowMove": True,
                "AllowGet": True,
                "AllowStore": True,
                "AllowStorageCommitment": True,
            }
            for ae, (host, port) in (modalities or {}).items()
        }
        cfg: dict[str, Any] = {
            "Name": "dicomlab-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": ae_title,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": check_called_aet,
            "DicomAlwaysAllowEcho": allow_unknown,
            "DicomAlwaysAllowStore": allow_unknown,
            "DicomAlwaysAllowFind": allow_unknown,
            "DicomAlwaysAllowGet": allow_unknown,
            "DicomAlwaysAllowMove": allow_unknown,
            "DicomModalities": modal,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "DicomAssociationCloseDelay": 0,
            "SaveJobs": False,
            "StorageAccessOnFind": "Never",
            "Plugins": [],
            "ConcurrentJobs": 4,
        }
        if dicomweb:
            cfg["Plugins"] = [require_file(DICOMWEB_PLUGIN, "orthanc-dicomweb")]
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"}
        cfg.update(config or {})
        self.config_path.write_text(json.dumps(cfg, indent=2))
        users = cfg.get("RegisteredUsers") or {}
        # with authentication on, the REST calls below go as the first registered user
        self._auth = next(iter(users.items())) if cfg["AuthenticationEnabled"] and users else None

    def command(self) -> list[str]:
        return [require_binary("Orthanc"), "--no-jobs", str(self.config_path)]

    def ready(self) -> None:
        super().ready()
        assert self.proc is not None
        wait_for_port(self.http_port, proc=self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.rest("GET", "/system")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise TimeoutError("Orthanc's REST API did not answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        """Call Orthanc's REST API on loopback; JSON in, JSON out."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self._auth is not None:
            token = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=60) as rsp:
            payload = rsp.read()
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload

    def upload(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Store DICOM files through the REST API; returns how many were uploaded."""
        n = 0
        for p in paths:
            self.rest("POST", "/instances", raw=Path(p).read_bytes())
            n += 1
        return n

    @property
    def node(self) -> Node:
        return Node("orthanc", ae_title=self.ae_title, host="127.0.0.1", port=self.port, timeout=10)

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (with ``dicomweb=True``)."""
        return f"{self.url}/dicom-web"


class SilentListener:
    """A loopback TCP listener that accepts connections and never answers.

    ``backlog_full=True`` instead never accepts and fills its backlog, so a
    further connect gets no SYN-ACK (a connect timeout).
    """

    def __init__(self, backlog_full: bool = False) -> None:
        self.backlog_full = backlog_full
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._held: list[socket.socket] = []

    def __enter__(self) -> Self:
        self.sock.listen(0 if self.backlog_full else 8)
        if self.backlog_full:
            # Linux keeps backlog+1 completed connections; then drops SYNs.
            for _ in range(4):
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    c.connect(("127.0.0.1", self.port))
                self._held.append(c)
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self._held:
            c.close()
        self.sock.close()

    def node(self, timeout: float = 2.0) -> Node:
        return Node("silent", ae_title="SILENT", host="127.0.0.1", port=self.port, timeout=timeout)
