"""How a LocalPACS caps its C-FIND answers, as archives do (a frozen value).

Orthanc's ``LimitFindResults``, dcm4chee's query limits and many PACS stop after a
set number of matches; dicomlab's planner (``dl.find(..., plan="auto")``) is made to
cope, and a LocalPACS with a :class:`FindLimit` shows it (for a class, or a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dicomlab.errors import ValidationError

__all__ = ["FindLimit", "LimitHow"]

LimitHow = Literal["cancel", "refuse", "silent"]


@dataclass(frozen=True, slots=True)
class FindLimit:
    """At most ``matches`` matches for one C-FIND; past them the query ends ``how``:

    - ``"cancel"``: the first ``matches`` rows, then status 0xFE00 (matching ended);
    - ``"refuse"``: nothing, status 0xA700 (out of resources) with an Error Comment;
    - ``"silent"``: the first ``matches`` rows, then Success, as if that were all.
    """

    matches: int
    how: LimitHow = "cancel"

    def __post_init__(self) -> None:
        m = self.matches
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 10_000_000:
            raise ValidationError(f"FindLimit matches {m!r} must be an integer in 1-10000000")
        if self.how not in ("cancel", "refuse", "silent"):
            raise ValidationError(
                f"FindLimit how {self.how!r} must be 'cancel', 'refuse' or 'silent'"
            )
