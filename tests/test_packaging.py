"""The public surface and the packaging files stay in step."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import dicomlab as dl

ROOT = Path(__file__).resolve().parents[1]


def _req_name_and_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_req_name_and_spec(r) for r in project["dependencies"])
    for extra in ("test", "dev"):
        wanted.update(_req_name_and_spec(r) for r in project["optional-dependencies"][extra])
    text = (ROOT / "environment.yml").read_text()
    env_lines = text.split("\ndependencies:\n", 1)[1].splitlines()
    conda = {}
    for line in env_lines:
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.\-]+)([<>=!].*)?$", line)
        if m and m.group(1) not in ("python", "pip"):
            conda[m.group(1).lower()] = (m.group(2) or "").replace(" ", "")
    assert conda == wanted, "environment.yml and pyproject.toml list different packages/ranges"


def test_python_floor_matches() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert "python>=3.11" in (ROOT / "environment.yml").read_text()


def test_exported_members() -> None:
    exported = set(dl.__all__)
    public = {n for n in vars(dl) if not n.startswith("_") and n != "annotations"}
    # Submodules imported as a side effect of package import are not API unless listed.
    modules = {
        "core",
        "net",
        "server",
        "errors",
        "log",
        "testing",
        "cli",
        "demo",
        "transfer",
        "peers",
        "front",
        "cohort",
        "protocols",
        "derived",
        "web",
        "deid",
    }
    lazy = {"widgets", "key_objects"}  # imported on first use (ipywidgets only then)
    assert exported - {"__version__"} - lazy <= public
    assert public - exported - modules == set(), "public names missing from __all__"
    for name in dl.__all__:
        assert hasattr(dl, name), name


def test_exception_tree_has_one_root() -> None:
    errors = [getattr(dl, n) for n in dl.__all__ if n.endswith(("Error", "Conflict"))]
    errors += [dl.ConnectionRefused, dl.ConnectTimeout, dl.AssociationRejected]
    for exc in errors:
        assert issubclass(exc, dl.DicomlabError), exc
    assert issubclass(dl.ValidationError, ValueError)
