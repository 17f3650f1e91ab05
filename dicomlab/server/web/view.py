"""``dl.view``: open the OHIF viewer of a LocalPACS on the studies of a table."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dicomlab.errors import ConfigError, ValidationError

__all__ = ["ViewLink", "view"]


@dataclass(frozen=True, slots=True)
class ViewLink:
    """A link to the viewer on some studies: shown as a link in a notebook."""

    url: str
    studies: tuple[str, ...]

    def _repr_html_(self) -> str:
        what = f"{len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'}"
        return (
            f'<a href="{html.escape(self.url)}" target="_blank" rel="noopener">'
            f"Open {what} in the OHIF viewer</a>"
        )

    def __str__(self) -> str:
        return self.url


def _studies(what: Any) -> list[str]:
    if isinstance(what, pd.DataFrame):
        if "StudyInstanceUID" not in what.columns:
            raise ValidationError("dl.view needs a table with a StudyInstanceUID column")
        values = what["StudyInstanceUID"].dropna().astype(str).tolist()
    elif isinstance(what, str):
        values = [what]
    elif isinstance(what, Iterable):
        values = [str(v) for v in what]
    else:
        raise ValidationError(f"dl.view takes a DataFrame or Study Instance UIDs, not {what!r}")
    studies = list(dict.fromkeys(values))
    if not studies:
        raise ValidationError("dl.view: the selection holds no study")
    return studies


def view(what: Any, local: Any = None) -> ViewLink:
    """A link that opens ``local``'s viewer (default: the LocalPACS of this process that
    serves a web port and holds every selected study) on the studies of ``what``: a
    DataFrame with a StudyInstanceUID column (``dl.find`` results, a QueryPanel
    selection), one UID or several."""
    from dicomlab.server.lifecycle import running_servers
    from dicomlab.server.localpacs import LocalPACS

    studies = _studies(what)
    if local is not None:
        return ViewLink(local.viewer_url(studies), tuple(studies))
    serving = [s for s in running_servers() if isinstance(s, LocalPACS) and s.serves_web]
    if not serving:
        raise ConfigError(
            "no LocalPACS of this process serves a web port",
            hint="local = dl.LocalPACS(root, web_port=0).start(), then dl.view(df, local)",
        )
    for candidate in serving:
        if _holds(candidate, studies):
            return ViewLink(candidate.viewer_url(studies), tuple(studies))
    raise ConfigError(
        f"no LocalPACS serving a web port holds all {len(studies)} selected studies",
        hint="retrieve them first (dl.retrieve(node, df, into=local)), then view them",
    )


def _holds(local: Any, studies: list[str]) -> bool:
    asked = {"StudyInstanceUID": "\\".join(studies)}
    held = {m["StudyInstanceUID"] for m in local.archive.index.find("STUDY", asked)}
    return held >= set(studies)
