"""The README's Python examples run as written (in a temporary folder, isolated home)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(_blocks()) >= 2


@pytest.mark.peers
def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in _blocks():
        exec(compile(block, "README.md", "exec"), namespace)
    done = namespace["done"]
    pids = namespace["pids"]
    assert len(pids) == 2 and not any(Path(f"/proc/{p}").exists() for p in pids)  # type: ignore[attr-defined]
    whole = namespace["whole"]
    resumed = namespace["resumed"]
    second = namespace["second_pull"]
    assert len(second) == 0 and second.attrs["changes"] == {"study removed": 1}  # type: ignore[attr-defined]
    assert len(resumed) == 20 and bool(resumed.complete.all())  # type: ignore[arg-type]
    assert len(whole) == 20 and whole.attrs["complete"] and whole.attrs["queries"] > 1  # type: ignore[attr-defined]
    assert bool(done.complete.all())  # type: ignore[attr-defined]
    assert (tmp_path / "throughput.png").stat().st_size > 5_000
    assert namespace["accepted"].ok  # type: ignore[attr-defined]
    assert "requires a client certificate" in namespace["refused"].detail  # type: ignore[attr-defined]
    assert bool(namespace["pulled"].complete.all())  # type: ignore[attr-defined]
    assert namespace["stowed"].attrs["complete"]  # type: ignore[attr-defined]
    assert namespace["kept"].attrs["complete"]  # type: ignore[attr-defined]
    assert (namespace["offline"].status == "ok").all()  # type: ignore[attr-defined]
    assert "A1" in set(namespace["todo"].AccessionNumber)  # type: ignore[attr-defined]
    clean = namespace["clean"]
    assert len(clean) and clean.PatientID.str.startswith("DL").all()  # type: ignore[attr-defined]
    assert namespace["back"].original.notna().all()  # type: ignore[attr-defined]
    summary = namespace["ops"]
    assert len(summary) > 0  # type: ignore[arg-type]
