"""The package's layers, enforced from its imports (docs/architecture.md draws them).

core is pure and imports nothing of ours but errors; each layer above imports only
the layers below it; widgets use the public API (``import dicomlab as dl``) and each
other, nothing else; nothing shipped to users imports the test helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dicomlab"

ALLOWED: dict[str, set[str]] = {
    "errors": {"core"},  # Node, for type hints only
    "core": {"errors"},
    "log": {"core", "errors"},
    "tls": {"core", "errors"},
    "net": {"core", "errors", "log"},
    "web": {"core", "errors", "log", "net"},
    "server": {"core", "errors", "log", "net", "deid"},
    "transfer": {"core", "errors", "log", "net", "server", "web", "deid"},
    "peers": {"core"},
    "plot": set(),  # DataFrames in, Axes out
    "synth": {"derived"},
    "derived": set(),  # highdicom objects from data sets
    "deid": {"core", "errors"},  # PS3.15 de-identification of data sets
    "protocols": {"core", "errors", "log", "net", "server", "transfer", "web"},
    "front": {"core", "errors", "net", "server", "transfer", "protocols", "deid"},
    "cohort": {"core", "errors", "front", "server"},  # bundles of queries and pulls
    "widgets": {"(public)"},
    "cli": {"(public)", "core", "errors", "net", "server", "tls", "demo", "log", "front", "deid"},
    "demo": {"(public)", "core", "errors", "log", "net", "server", "front", "peers"},
}
"""Layer -> the layers of ours it may import ("(public)": ``dicomlab`` itself)."""


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """The layers of ours that ``path`` imports (``dicomlab.x.y`` -> ``x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "dicomlab":
                found.add(parts[1] if len(parts) > 1 else "(public)")
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_the_layers_below_it(path: Path) -> None:
    layer = _layer(path)
    wrong = _imports(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(wrong)}"


def _third_party(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found


@pytest.mark.parametrize("layer", ["core", "widgets"])
def test_core_and_widgets_never_touch_pynetdicom(layer: str) -> None:
    wrong = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if _layer(p) == layer and "pynetdicom" in _third_party(p)
    ]
    assert not wrong, wrong


def test_nothing_shipped_to_users_imports_the_test_helpers() -> None:
    users = [p for p in PACKAGE.rglob("*.py") if _layer(p) != "testing"]
    wrong = [str(p.relative_to(PACKAGE)) for p in users if "testing" in _imports(p)]
    assert not wrong, wrong


def test_every_module_has_a_layer() -> None:
    layers = {_layer(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "testing"}
    assert layers <= set(ALLOWED), sorted(layers - set(ALLOWED))


FAST_PATH = "_fast"
"""The fast path's package, net/_fast/: private beneath the seam (net/dimse.py) and the
transport (net/transport.py)."""
MAY_USE_FAST_PATH = {PACKAGE / "net" / "dimse.py", PACKAGE / "net" / "transport.py"}


def _net_modules_imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dicomlab.net":
                found |= {a.name for a in node.names}
            elif node.module.startswith("dicomlab.net."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {
                a.name.split(".")[2] for a in node.names if a.name.startswith("dicomlab.net.")
            }
    return found


def test_only_the_seam_and_the_transport_use_the_fast_path() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if path in MAY_USE_FAST_PATH or path.parent.name == FAST_PATH:
            continue
        if FAST_PATH in _net_modules_imported(path):
            wrong.append(str(path.relative_to(PACKAGE)))
    assert not wrong, wrong
