"""The notebooks under notebooks/ run top to bottom on a fresh kernel and assert their results.

Each runs in a temporary working folder with this test's DICOMLAB_HOME, so it reads
and writes nothing of the user's. A failing cell (their last cells assert) fails the test.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_are_there() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def test_notebooks_match_their_builder() -> None:
    """notebooks/*.ipynb are written by scripts/make_notebooks.py: no hand edits that drift."""
    import importlib.util

    builder = ROOT / "scripts" / "make_notebooks.py"
    spec = importlib.util.spec_from_file_location("make_notebooks", builder)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = {
        "01_quickstart": module.QUICKSTART,
        "02_cohort_pull": module.COHORT,
        "03_transfer_logs": module.LOGS,
        "04_teaching_dicom_networking": module.TEACHING,
    }
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in built[path.stem]], path.name


def _listening() -> dict[str, str]:
    """Listening TCP sockets: socket inode -> local address (hex, as /proc shows it)."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            out[fields[9]] = fields[1]
    return out


def _owners(inodes: set[str]) -> list[str]:
    """The command lines of the processes holding these sockets (for a failure message)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _new_listeners(before: dict[str, str], settle_s: float = 10.0) -> dict[str, str]:
    """Sockets listening now that were not before; a kernel that is still exiting gets
    ``settle_s`` to close its own."""
    deadline = time.monotonic() + settle_s
    while True:
        new = {k: v for k, v in _listening().items() if k not in before}
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_stops_what_it_starts(path: Path, tmp_path: Path) -> None:
    listening = _listening()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    # a plot cell shows its picture (issue: Figures built without pyplot printed as text)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip().endswith(".figure"):
            kinds = [k for o in cell.outputs for k in o.get("data", {})]
            assert "image/png" in kinds, (cell.source, kinds)
    new = _new_listeners(listening)  # every LocalPACS it started is stopped
    assert not new, (new, _owners(set(new)))
    with socket.socket() as s:  # and the kernel is gone with its threads
        s.bind(("127.0.0.1", 0))
