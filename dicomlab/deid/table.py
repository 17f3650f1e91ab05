"""PS3.15 Table E.1-1 as data: which action the Basic Application Level Confidentiality
Profile and its options take on each attribute (pure, read once).

The table is ``ps315_2026d.json`` beside this module (``PS315-SOURCE.md`` says where it
comes from). A row gives the Basic Profile's action (``X`` remove, ``Z`` empty, ``D``
dummy, ``U`` new UID, ``K`` keep, ``C`` clean, or a choice such as ``X/Z/D``) and, per
option, the action that replaces it (``K`` keep or ``C`` clean). Rows name one tag
(``00100010``), a repeating group (``50xxxxxx``, ``60xx4000``) or every private
attribute (``PRIVATE``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = ["OPTIONS", "Action", "Rule", "Table", "table"]

Action = Literal["X", "Z", "D", "U", "K", "C"]

OPTIONS: dict[str, tuple[str, str]] = {
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_longitudinal_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_longitudinal_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
}
"""The options of PS3.15 E.3, by the table's name, with their CID 7050 code and meaning."""

BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")

_FILE = "ps315_2026d.json"


def choose(action: str) -> Action:
    """One action for a choice of the table (pure): the one that keeps every IOD valid.

    ``D`` satisfies a Type 1, 2 or 3 attribute and ``Z`` a Type 2 or 3 one, so a
    choice takes ``U`` if offered, else ``D`` if offered, else ``Z``, else ``X``
    (the table offers ``X`` alone only where removal is always allowed).
    """
    offered = action.replace("*", "").split("/")
    preferences: tuple[Action, ...] = ("U", "D", "Z", "X", "K", "C")
    for preferred in preferences:
        if preferred in offered:
            return preferred
    raise ValueError(f"unknown PS3.15 action {action!r}")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str
    name: str
    basic: str
    options: tuple[tuple[str, str], ...]

    def action(self, options: Iterable[str]) -> Action:
        """The action under ``options`` (the last option that names this row wins)."""
        chosen = self.basic
        given = dict(self.options)
        for option in options:
            if option in given:
                chosen = given[option]
        return choose(chosen)


class Table:
    """The rules by tag, the repeating-group patterns and the private-attribute rule."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.source: dict[str, Any] = dict(doc.get("source", {}))
        self.by_tag: dict[int, Rule] = {}
        self.patterns: list[tuple[re.Pattern[str], Rule]] = []
        self.private: Rule | None = None
        self.content: dict[tuple[str, str], Rule] = {}
        """Table E.3.4-1: content items by (scheme, code) of their concept name."""
        for item in doc.get("content_items", []):
            self.content[(str(item["scheme"]), str(item["code"]))] = Rule(
                f"{item['scheme']}:{item['code']}",
                str(item["meaning"]),
                str(item["basic"]),
                tuple(sorted((str(k), str(v)) for k, v in (item.get("options") or {}).items())),
            )
        for row in doc["rules"]:
            rule = Rule(
                str(row["tag"]),
                str(row["name"]),
                str(row["basic"]),
                tuple(sorted((str(k), str(v)) for k, v in (row.get("options") or {}).items())),
            )
            tag = rule.tag
            if tag == "PRIVATE":
                self.private = rule
            elif "x" in tag.lower():
                pattern = re.compile("^" + re.sub("[xX]", "[0-9A-F]", tag.upper()) + "$")
                self.patterns.append((pattern, rule))
            else:
                self.by_tag[int(tag, 16)] = rule

    @property
    def edition(self) -> str:
        return str(self.source.get("edition", "?"))

    def rule(self, tag: int) -> Rule | None:
        """The rule of a standard attribute (``None``: not in the table)."""
        found = self.by_tag.get(tag)
        if found is not None or not self.patterns:
            return found
        text = f"{tag:08X}"
        return next((rule for pattern, rule in self.patterns if pattern.match(text)), None)

    def __len__(self) -> int:
        return len(self.by_tag) + len(self.patterns) + (self.private is not None)


@cache
def table() -> Table:
    """The table shipped with dicomlab (read once)."""
    text = resources.files(__package__).joinpath(_FILE).read_text(encoding="utf-8")
    return Table(json.loads(text))
