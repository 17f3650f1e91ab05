"""Real-browser fixtures: Debian's chromium driven by Playwright, Voila and JupyterLab servers.

Servers run on free loopback ports with their own Jupyter dirs, TMPDIR and
DICOMLAB_HOME, serving a temporary copy of tests/ui/query_app.ipynb, and are stopped
by PID. A browser test that cannot run (no chromium, no playwright) is skipped here
and, under CI=true, turned into a failure by tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dicomlab.peers import free_port, stop_process

HERE = Path(__file__).resolve().parent
NOTEBOOK = "query_app.ipynb"
NOTEBOOKS = HERE.parent.parent / "notebooks"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dicomlab-ui"
START_TIMEOUT = float(os.environ.get("UI_SERVER_TIMEOUT", "120"))
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", HERE.parent.parent / "test-artifacts"))


def _unavailable() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"chromium not found at {CHROMIUM!r} (make peers installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def _env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "jcfg"),
        ("JUPYTER_DATA_DIR", "jdata"),
        ("JUPYTER_RUNTIME_DIR", "jrt"),
        ("IPYTHONDIR", "ipython"),
        ("TMPDIR", "tmp"),
        ("DICOMLAB_HOME", "home"),
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / sub)
    (base / "jcfg" / "labconfig").mkdir(exist_ok=True)
    (base / "jcfg" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env.pop("JUPYTER_TOKEN", None)
    # the kernel must find this venv's kernelspec (python3 -> this interpreter)
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    return env


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(url: str) -> int | None:
    try:
        with _NO_PROXY.open(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


@dataclass
class Server:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    token: str = ""


def _start(
    cmd: list[str],
    root: Path,
    env: dict[str, str],
    log: Path,
    ready: str,
    ok: Callable[[int], bool] = lambda s: s == 200,
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2]} exited during start-up:\n{log.read_text()[-3000:]}")
        status = _status(ready)
        if status is not None and ok(status):
            return proc
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(f"{cmd[2]} not ready after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, grace=20)  # jupyter/voila shut their kernels down on SIGTERM


def _root(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server root with the UI notebooks and copies of the project's notebooks/."""
    base = factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    for path in [*HERE.glob("*.ipynb"), *NOTEBOOKS.glob("*.ipynb")]:
        shutil.copy(path, root / path.name)
    return base, root


@pytest.fixture(scope="session")
def voila_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base, root = _root(tmp_path_factory)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "voila",
        NOTEBOOK,
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        "--Voila.port_retries=0",
        "--show_tracebacks=True",
    ]
    url = f"http://127.0.0.1:{port}"
    log = base / "voila.log"
    proc = _start(cmd, root, _env(base), log, f"{url}/voila/static/extension.js", lambda s: s < 500)
    yield Server(url, root, proc, log)
    _stop(proc)


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base, root = _root(tmp_path_factory)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    url = f"http://127.0.0.1:{port}"
    log = base / "jupyterlab.log"
    proc = _start(cmd, root, _env(base), log, f"{url}/api/status?token={TOKEN}")
    yield Server(url, root, proc, log, TOKEN)
    _stop(proc)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (kept by CI as test artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
