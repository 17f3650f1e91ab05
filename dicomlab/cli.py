"""The ``dicomlab`` command: ``demo``, ``echo``, ``find``, ``retrieve``, ``store``,
``deidentify``, ``serve``, ``nodes``, ``synth``, ``certs``."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

import pandas as pd

from dicomlab import __version__
from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import TLS, Node
from dicomlab.errors import (
    BurnedInAnnotationWarning,
    DicomlabError,
    PartialResultWarning,
    ValidationError,
)

__all__ = ["main"]


def _out(text: str) -> None:
    print(text, flush=True)


def _cmd_echo(args: argparse.Namespace) -> int:
    from dicomlab.front import echo

    book = NodeBook.load()
    target = args.node
    if args.timeout is not None:
        from dicomlab.net.association import resolve_node

        target = resolve_node(target, book).replace(timeout=args.timeout)
    result = echo(target, calling_ae=args.calling_ae, book=book)
    _out(str(result))
    return 0 if result.ok else 2


def _cmd_find(args: argparse.Namespace) -> int:
    from dicomlab.core.query import Query
    from dicomlab.front import find

    filters: dict[str, str] = {}
    for item in args.filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"filter {item!r} is not KEYWORD=VALUE")
        filters[key] = value
    query = Query(args.level, tuple(filters.items()), (), args.date)
    df = find(args.node, query, calling_ae=args.calling_ae, plan="auto" if args.plan else None)
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.parquet:
        df.to_parquet(args.parquet, index=False)
    if not args.csv and not args.parquet:
        _out(df.to_string(max_rows=args.max_rows, max_colwidth=40))
    state = "complete" if df.attrs["complete"] else f"INCOMPLETE: {df.attrs['error']}"
    asked = f", {df.attrs['queries']} queries" if "queries" in df.attrs else ""
    _out(f"{len(df)} matches in {df.attrs['elapsed_s']:.2f} s{asked} ({state})")
    return 0 if df.attrs["complete"] else 3


def _cmd_retrieve(args: argparse.Namespace) -> int:
    from dicomlab.front import retrieve

    res = retrieve(
        args.node,
        args.study,
        into=args.into,
        method=args.method,
        max_connections=args.max_connections,
        calling_ae=args.calling_ae,
    )
    assert isinstance(res, pd.DataFrame)
    _out(res[_OUTCOME].to_string(max_colwidth=60))
    return 0 if res.attrs["complete"] else 3


_OUTCOME = [
    "StudyInstanceUID",
    "status",
    "expected_instances",
    "received_instances",
    "complete",
    "skipped",
    "attempts",
    "error",
]


def _cmd_jobs(args: argparse.Namespace) -> int:
    from dicomlab.front import jobs

    kept = jobs()
    shown = kept.head(args.max_rows).drop(columns=["created"])
    _out(shown.to_string(index=False) if len(kept) else "no job kept")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from dicomlab.front import resume

    res = resume(args.job_id, calling_ae=args.calling_ae)
    assert isinstance(res, pd.DataFrame)
    _out(res[_OUTCOME].to_string(max_colwidth=60))
    return 0 if res.attrs["complete"] else 3


def _cmd_store(args: argparse.Namespace) -> int:
    from dicomlab.front import store

    res = store(
        args.node,
        args.path,
        max_connections=args.max_connections,
        calling_ae=args.calling_ae,
        transcode=not args.no_transcode,
        commit=args.commit if args.commit is not None else False,
    )
    assert isinstance(res, pd.DataFrame)
    bad = res[res["error"].notna()]
    if len(bad):
        _out(bad[["path", "status", "error"]].to_string(max_colwidth=80))
    summary = res["status"].value_counts(dropna=False).to_dict()
    _out(f"{len(res)} files: statuses {summary}")
    if args.commit is None:
        return 0 if res.attrs["complete"] else 3
    uncommitted = res[res["status"].notna() & ~res["committed"].fillna(False).astype(bool)]
    if len(uncommitted):
        _out(uncommitted[["path", "commit_error"]].to_string(max_colwidth=80))
    _out(f"{len(res) - len(uncommitted)} of {len(res)} committed by the node")
    return 0 if res.attrs["complete"] and not len(uncommitted) else 3


def _cmd_demo(args: argparse.Namespace) -> int:
    from dicomlab.demo import run_demo

    return run_demo(args.out, _out, n_studies=args.studies)


def _cmd_synth(args: argparse.Namespace) -> int:
    from dicomlab import synth

    df = synth.write_studies(
        args.folder,
        n_studies=args.studies,
        seed=args.seed,
        image_size=args.size,
        derived=args.derived,
    )
    _out(f"wrote {len(df)} instances of {df.StudyInstanceUID.nunique()} studies to {args.folder}")
    return 0


def _cmd_deidentify(args: argparse.Namespace) -> int:
    import os

    from dicomlab.deid import Deidentifier

    secret = os.environ.get(args.secret_env)
    if not secret:
        raise ValidationError(
            f"the environment variable {args.secret_env} (the de-identification secret) is not set"
        )
    deid = Deidentifier(secret, args.option, map_dir=args.map_dir)
    df = deid.apply(args.source, args.out)
    failed = df[df.status != "ok"]
    for row in failed.itertuples():
        print(f"refused {row.source}: {row.error}", file=sys.stderr)
    risky = int(df.burned_in_risk.isin(["yes", "possible"]).sum())
    _out(
        f"de-identified {len(df) - len(failed)} of {len(df)} files into {args.out}"
        + (f"; {risky} may show text burned into their pixels" if risky else "")
    )
    return 0 if failed.empty else 3


def _cmd_nodes(args: argparse.Namespace) -> int:
    book = NodeBook.load()
    if args.action == "list":
        _out(f"# {book.path}  (we are {book.local.ae_title}, port {book.local.port})")
        for n in book:
            mark = "*" if n.name == book.default else " "
            _out(
                f"{mark} {n.name:16} {n.address:40} retrieve={n.retrieve} "
                f"tls={'yes' if n.tls else 'no'}"
            )
        return 0
    if args.action == "add":
        node = Node.parse(args.address, name=args.name).replace(retrieve=args.retrieve)
        book.add(node, replace=args.replace)
        if args.default:
            book.default = node.name
    elif args.action == "remove":
        book.remove(args.name)
    elif args.action == "default":
        book.default = args.name
    path = book.save()
    _out(f"saved {path}")
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from dicomlab.tls import make_demo_certificates

    hosts = tuple(args.host) if args.host else ("localhost", "127.0.0.1")
    certs = make_demo_certificates(args.folder, hostnames=hosts)
    _out(f"demo CA, server and client certificates in {certs.folder} (not for production):")
    for name in ("ca", "server_cert", "server_key", "client_cert", "client_key"):
        _out(f"  {name:<12} {getattr(certs, name)}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    import threading

    from dicomlab import synth
    from dicomlab.server.localpacs import LocalPACS

    book = NodeBook.load()
    allow = [s.strip() for s in args.allow.split(",") if s.strip()]
    tls = None
    if args.tls_cert or args.tls_key:
        tls = TLS(
            cert=args.tls_cert,
            key=args.tls_key,
            ca=args.tls_ca,
            require_client_cert=args.require_client_cert,
        )
    pacs = LocalPACS(
        args.root,
        ae_title=args.ae,
        port=args.port,
        host=args.host,
        book=book,
        allow_unknown=allow,
        fsync=not args.no_fsync,
        tls=tls,
        tls_port=args.tls_port if tls is not None else None,
        web_port=args.web_port,
        workers=int(args.workers) if args.workers.isdigit() else args.workers,
    )
    if args.seed_demo:
        with tempfile.TemporaryDirectory() as tmp:
            synth.write_studies(tmp, n_studies=args.seed_demo, seed=0)
            done = pacs.import_files(tmp)
        _out(f"seeded {int((done.status == 'stored').sum())} synthetic instances")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop
    with pacs:
        on_tls = f", TLS on {pacs.tls_port}" if tls is not None else ""
        _out(
            f"LocalPACS {pacs.ae_title} serving {pacs.archive.root} on {pacs.host}:{pacs.port}"
            f"{on_tls} (unknown callers may: {', '.join(allow) or 'nothing'}); Ctrl-C stops"
        )
        if pacs.workers:
            ready = "ready" if pacs.wait_for_workers() else "not all ready"
            _out(f"{pacs.workers} worker processes receiving storage ({ready})")
        if args.web_port is not None:
            _out(f"web port: {pacs.web_url} (viewer), {pacs.dicomweb_url} (DICOMweb)")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            _out("stopping...")
    _out(f"stopped; {pacs.stats}")
    return 0


def _cmd_viewer(args: argparse.Namespace) -> int:
    from dicomlab.server.web import viewer

    if args.action == "install":
        _out(f"OHIF viewer {viewer.OHIF_VERSION} in {viewer.install(force=args.force)}")
        return 0
    found = viewer.dist()
    _out(f"OHIF viewer {viewer.OHIF_VERSION}: {found or 'not installed (dicomlab viewer install)'}")
    return 0 if found is not None else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dicomlab", description="DICOM networking for notebooks")
    p.add_argument("--version", action="version", version=f"dicomlab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("echo", help="C-ECHO a node and diagnose failures")
    e.add_argument("node", help="a node name from the node book, or AE@HOST:PORT")
    e.add_argument("--calling-ae", help="our AE title (default: the node book's)")
    e.add_argument("--timeout", type=float, help="seconds (default: the node's)")
    e.set_defaults(func=_cmd_echo)

    f = sub.add_parser("find", help="C-FIND: query a node, print or save a table")
    f.add_argument("node", help="a node name from the node book, or AE@HOST:PORT")
    f.add_argument("filters", nargs="*", help="KEYWORD=VALUE filters (wildcards, ranges A-B)")
    f.add_argument(
        "--level", choices=["patient", "study", "series", "image", "worklist"], default="study"
    )
    f.add_argument("--date", help="today, yesterday, last7days, lastNdays, all, or YYYYMMDD")
    f.add_argument("--calling-ae", help="our AE title (default: the node book's)")
    f.add_argument("--csv", help="write the result as CSV")
    f.add_argument("--parquet", help="write the result as Parquet")
    f.add_argument("--max-rows", type=int, default=50)
    f.add_argument(
        "--plan",
        action="store_true",
        help="split the query when the node caps its answers (by date, time, modality, ID)",
    )
    f.set_defaults(func=_cmd_find)

    j = sub.add_parser("jobs", help="the retrieve jobs kept (interrupted ones can resume)")
    j.add_argument("--max-rows", type=int, default=20)
    j.set_defaults(func=_cmd_jobs)

    u = sub.add_parser("resume", help="take up a kept retrieve job (after a crash, a cancel)")
    u.add_argument("job_id", help="its id, from 'dicomlab jobs'")
    u.add_argument("--calling-ae", help="our AE title (default: the node book's)")
    u.set_defaults(func=_cmd_resume)

    r = sub.add_parser("retrieve", help="C-MOVE/C-GET studies into a LocalPACS folder")
    r.add_argument("node", help="a node name from the node book, or AE@HOST:PORT")
    r.add_argument("--study", action="append", required=True, help="Study Instance UID")
    r.add_argument("--into", help="archive folder (default: the default LocalPACS)")
    r.add_argument("--method", choices=["move", "get"], help="default: the node's")
    r.add_argument("--max-connections", type=int)
    r.add_argument("--calling-ae", help="our AE title (default: the node book's)")
    r.set_defaults(func=_cmd_retrieve)

    t = sub.add_parser("store", help="C-STORE files or folders to a node")
    t.add_argument("node", help="a node name from the node book, or AE@HOST:PORT")
    t.add_argument("path", nargs="+", help="files or folders (recursive)")
    t.add_argument("--max-connections", type=int)
    t.add_argument("--calling-ae", help="our AE title (default: the node book's)")
    t.add_argument(
        "--no-transcode",
        action="store_true",
        help="send files in their own transfer syntax or not at all (default: convert "
        "losslessly to one the node accepts)",
    )
    t.add_argument(
        "--commit",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help="ask for storage commitment and wait for the report (default 60 s)",
    )
    t.set_defaults(func=_cmd_store)

    d = sub.add_parser("demo", help="run the demo")
    d.add_argument("--out", default="demo-output", help="folder for the demo's files")
    d.add_argument("--studies", type=int, default=20)
    d.set_defaults(func=_cmd_demo)

    s = sub.add_parser("synth", help="write synthetic studies")
    s.add_argument("folder")
    s.add_argument("-n", "--studies", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=16, help="image rows/columns (512 for benchmarks)")
    s.add_argument(
        "--derived", action="store_true", help="add a SEG, an SR and a KOS to every CT study"
    )
    s.set_defaults(func=_cmd_synth)

    x = sub.add_parser("deidentify", help="de-identify files by PS3.15 (Basic Profile + options)")
    x.add_argument("source", help="a file or a folder (searched recursively)")
    x.add_argument("out", help="folder for the de-identified files")
    x.add_argument(
        "--secret-env",
        default="DICOMLAB_DEID_SECRET",
        help="environment variable holding the secret (default DICOMLAB_DEID_SECRET)",
    )
    x.add_argument(
        "--option",
        action="append",
        default=[],
        help="a PS3.15 option, e.g. retain_longitudinal, clean_descriptors (repeatable)",
    )
    x.add_argument("--map-dir", default=None, help="folder of the pseudonym map")
    x.set_defaults(func=_cmd_deidentify)

    v = sub.add_parser("serve", help="run a LocalPACS in the foreground")
    v.add_argument("--root", required=True, help="archive folder")
    v.add_argument("--port", type=int, default=11112)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    v.add_argument("--ae", default="DICOMLAB", help="our AE title")
    v.add_argument(
        "--allow",
        default="echo",
        help="services unknown callers may use: echo,store,find,move,get or all (default echo)",
    )
    v.add_argument(
        "--seed-demo", type=int, default=0, metavar="N", help="import N synthetic studies"
    )
    v.add_argument("--no-fsync", action="store_true", help="do not fsync received files")
    v.add_argument("--tls-cert", help="serve TLS too: our certificate (PEM)")
    v.add_argument("--tls-key", help="the certificate's private key (PEM)")
    v.add_argument("--tls-ca", help="CA certificate that signs client certificates (PEM)")
    v.add_argument("--tls-port", type=int, default=2762, help="TLS port (default 2762)")
    v.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse TLS clients without a certificate signed by --tls-ca",
    )
    v.add_argument(
        "--web-port", type=int, default=None, help="serve DICOMweb and the viewer on this port"
    )
    v.add_argument(
        "--workers",
        default="0",
        help="worker processes receiving storage on the other cores: a number, or auto "
        "(one per core); default 0",
    )
    v.set_defaults(func=_cmd_serve)

    w = sub.add_parser("viewer", help="install or locate the OHIF viewer (npm registry)")
    w.add_argument("action", choices=["install", "where"])
    w.add_argument("--force", action="store_true", help="install again")
    w.set_defaults(func=_cmd_viewer)

    c = sub.add_parser("certs", help="write a demo CA, server and client certificate (TLS demos)")
    c.add_argument("folder")
    c.add_argument(
        "--host",
        action="append",
        default=None,
        help="a name or address the server certificate is for (repeatable; default "
        "localhost and 127.0.0.1)",
    )
    c.set_defaults(func=_cmd_certs)

    n = sub.add_parser("nodes", help="list or edit the node book")
    nsub = n.add_subparsers(dest="action", required=True)
    nsub.add_parser("list")
    a = nsub.add_parser("add")
    a.add_argument("name")
    a.add_argument("address", help="AE@HOST:PORT")
    a.add_argument("--retrieve", choices=["move", "get"], default="move")
    a.add_argument("--default", action="store_true")
    a.add_argument("--replace", action="store_true")
    r = nsub.add_parser("remove")
    r.add_argument("name")
    df = nsub.add_parser("default")
    df.add_argument("name")
    n.set_defaults(func=_cmd_nodes)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEYWORD=VALUE filters may follow options: dicomlab find N --date today PatientName=X*
        if args.command == "find" and all("=" in e and not e.startswith("-") for e in extra):
            args.filters = [*args.filters, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with warnings.catch_warnings():
            # A partial result is printed as INCOMPLETE and exits 3: no Python warning text too.
            warnings.simplefilter("ignore", PartialResultWarning)
            warnings.simplefilter("ignore", BurnedInAnnotationWarning)  # said in the summary
            return int(args.func(args))
    except DicomlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
