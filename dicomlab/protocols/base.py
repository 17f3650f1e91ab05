"""The interface every protocol implements, and the choice of one for a call.

The public operations (:mod:`dicomlab.front`: ``find``, ``find_many``, ``retrieve``,
``store``, ``echo``) resolve the node, pick the protocol with :func:`choose` and call
it. A protocol (DIMSE: :mod:`dicomlab.protocols.dimse`; DICOMweb next) gets a resolved
:class:`~dicomlab.core.nodes.Node` and our AE title, and returns the same DataFrames,
outcome tables and :class:`~dicomlab.transfer.job.Job` objects as every other one, so
a new protocol touches neither ``transfer/`` nor the widgets nor the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Literal, Protocol

import pandas as pd

from dicomlab.core.call import Call
from dicomlab.core.nodes import Node
from dicomlab.core.query import Query
from dicomlab.errors import ConfigError
from dicomlab.net.echo import EchoResult
from dicomlab.transfer.job import Job
from dicomlab.transfer.retrieve import Request

__all__ = [
    "Call",
    "ProtocolName",
    "Speaker",
    "available",
    "choose",
    "find_any",
    "register",
    "retrieve_method",
    "values_of",
]

ProtocolName = Literal["auto", "dimse", "dicomweb"]


class Speaker(Protocol):
    """One protocol's implementation of the public operations (:mod:`dicomlab.front`
    says what each argument means)."""

    name: str
    retrieve_methods: tuple[str, ...]
    """The ``method=`` values of ``retrieve`` it serves (``move``, ``get``; ``wado``)."""
    operations: frozenset[str]
    """The operations it implements (of ``echo``, ``find``, ``find_many``, ``retrieve``,
    ``store``)."""

    def speaks(self, node: Node) -> bool:
        """Whether ``node`` is configured for this protocol."""
        ...

    def echo(self, call: Call) -> EchoResult: ...

    def find(self, call: Call, query: Query, today: date | None, warn: bool) -> pd.DataFrame: ...

    def finder(
        self, call: Call, today: date | None
    ) -> AbstractContextManager[Callable[[Query], pd.DataFrame]]:
        """Queries one after another (a planned find's pieces), each answered as ``find``
        with ``warn=False``; a protocol keeps its connection between them."""
        ...

    def find_many(
        self,
        call: Call,
        base: Query,
        keyword: str,
        values: Sequence[str],
        today: date | None,
        warn: bool,
    ) -> pd.DataFrame: ...

    def retrieve(self, call: Call, request: Request) -> pd.DataFrame | Job: ...

    def store(
        self,
        call: Call,
        what: Any,
        max_connections: int | None,
        wait: bool,
        transcode: bool = True,
        commit: float | None = None,
    ) -> pd.DataFrame | Job: ...


_SPEAKERS: dict[str, Speaker] = {}
"""Registered protocols, in the order ``protocol="auto"`` tries them."""


def register(speaker: Speaker) -> None:
    """Make ``speaker`` available under its name (a second registration replaces it)."""
    _SPEAKERS[speaker.name] = speaker


def available() -> tuple[str, ...]:
    return tuple(_SPEAKERS)


def choose(
    node: Node, protocol: str = "auto", method: str | None = None, operation: str = "find"
) -> Speaker:
    """The protocol ``operation`` on ``node`` uses: the one named, or with ``"auto"`` the
    first that the node is configured for, that implements the operation and (for a
    retrieve) serves ``method``.

    Raises :class:`~dicomlab.errors.ConfigError` naming the node when none fits.
    """
    if protocol != "auto":
        speaker = _SPEAKERS.get(protocol)
        if speaker is None:
            raise ConfigError(
                f"no protocol {protocol!r} in this dicomlab (it speaks: {', '.join(_SPEAKERS)})",
                node=node,
            )
        problem = _unfit(speaker, node, method, operation)
        if problem is not None:
            raise ConfigError(problem, node=node)
        return speaker
    problems = []
    for speaker in _SPEAKERS.values():
        problem = _unfit(speaker, node, method, operation)
        if problem is None:
            return speaker
        problems.append(problem)
    raise ConfigError(
        f"no protocol of this dicomlab can {operation} on {node.name}: {'; '.join(problems)}",
        node=node,
    )


def _unfit(speaker: Speaker, node: Node, method: str | None, operation: str) -> str | None:
    """Why ``speaker`` cannot run ``operation`` on ``node`` (None: it can)."""
    if not speaker.speaks(node):
        return f"{node.name} is not configured for {speaker.name}"
    if operation not in speaker.operations:
        return f"{speaker.name} has no {operation} in this dicomlab"
    if method is not None and method not in speaker.retrieve_methods:
        offered = ", ".join(repr(m) for m in speaker.retrieve_methods)
        return f"{speaker.name} cannot retrieve with method={method!r} (it offers {offered})"
    return None


def retrieve_method(speaker: Speaker, node: Node, method: str | None) -> str:
    """The method a retrieve uses: the one asked for, else the node's when the protocol
    serves it, else the protocol's first."""
    if method is not None:
        return method
    return (
        node.retrieve if node.retrieve in speaker.retrieve_methods else speaker.retrieve_methods[0]
    )


def values_of(raw: Iterable[Any]) -> list[str]:
    """A batch's values as text, each once, in order; blanks and None dropped."""
    return list(dict.fromkeys(str(v) for v in raw if v is not None and str(v) != ""))


def find_any(
    speaker: Speaker, call: Call, query: Query, today: date | None = None, warn: bool = True
) -> pd.DataFrame:
    """``query`` with ``speaker``: one query, or, when a filter holds several values, one
    per value (``find_many``, without a progress bar)."""
    many = query.fan_out()
    if many is None:
        return speaker.find(call, query, today, warn)
    keyword, values = many
    rest = query.without(keyword)
    return speaker.find_many(call.quiet(), rest, keyword, values_of(values), today, warn)
