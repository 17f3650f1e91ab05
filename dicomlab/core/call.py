"""What every operation is given, whatever the protocol."""

from __future__ import annotations

from dataclasses import dataclass

from dicomlab.core.nodebook import NodeBook
from dicomlab.core.nodes import Node

__all__ = ["Call"]


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a public operation: the resolved node, our AE title, the node book
    (names, our identity; None: the saved one), and whether to show a progress bar."""

    node: Node
    ours: str
    book: NodeBook | None = None
    progress: bool = True

    def quiet(self) -> Call:
        """The same call without a progress bar (a step inside another operation)."""
        return Call(self.node, self.ours, self.book, progress=False)
