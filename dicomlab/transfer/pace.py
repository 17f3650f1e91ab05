"""Politeness: how many connections a job uses now, and when it may run at all.

:class:`Pace` starts at the job's ``max_connections``, drops one connection each time
the peer says it is busy (an association rejected for a local limit or congestion, an
out-of-resources status 0xA7xx, HTTP 429 or 503) and gives one back after a run of
items that went well, never below one. :class:`Schedule` is a daily window (for
example 19:00-07:00, local time) outside of which no new item starts: an item that is
running when the window closes finishes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime

from dicomlab.errors import (
    AssociationRejected,
    DicomlabError,
    DICOMwebError,
    DimseError,
    ValidationError,
)

__all__ = ["Pace", "Schedule", "is_busy"]

log = logging.getLogger(__name__)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
RECOVER_AFTER = 10
"""Items in a row that went well before one more connection is used again."""


def is_busy(exc: DicomlabError) -> bool:
    """Whether ``exc`` says the peer is overloaded (worth fewer connections)."""
    if isinstance(exc, AssociationRejected):
        text = str(exc).lower()
        return exc.transient or "limit" in text or "congestion" in text
    if isinstance(exc, DICOMwebError):
        return exc.http_status in (429, 503)
    if isinstance(exc, DimseError) and exc.status is not None:
        return 0xA700 <= int(exc.status) <= 0xA7FF
    return False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A daily window ``start``-``end`` (``"HH:MM"``, local time; an ``end`` before the
    ``start`` runs past midnight, as in ``("19:00", "07:00")``)."""

    start: str
    end: str

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _HHMM.match(value):
                raise ValidationError(f"schedule {name} {value!r} must be 'HH:MM' (24 h)")
        if self.start == self.end:
            raise ValidationError(f"schedule {self.start}-{self.end} is empty")

    @classmethod
    def of(cls, value: Schedule | tuple[str, str] | None) -> Schedule | None:
        if value is None or isinstance(value, Schedule):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(*value)
        raise ValidationError(f"schedule={value!r} must be ('HH:MM', 'HH:MM') or None")

    def _times(self) -> tuple[dtime, dtime]:
        a, b = (dtime(int(t[:2]), int(t[3:])) for t in (self.start, self.end))
        return a, b

    def is_open(self, now: datetime) -> bool:
        a, b = self._times()
        t = now.time()
        return a <= t < b if a < b else (t >= a or t < b)

    def seconds_to_open(self, now: datetime) -> float:
        """0 when open; else the seconds until the window next opens."""
        if self.is_open(now):
            return 0.0
        a, _ = self._times()
        opening = now.replace(hour=a.hour, minute=a.minute, second=0, microsecond=0)
        if opening <= now:
            opening += timedelta(days=1)
        return (opening - now).total_seconds()


class Pace:
    """Connections in use for one job: at most ``limit`` at once (see module)."""

    def __init__(
        self,
        maximum: int,
        schedule: Schedule | None = None,
        clock: type[datetime] = datetime,
    ) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.lowest = self.maximum
        self.schedule = schedule
        self._clock = clock
        self._active = 0
        self._good = 0
        self._cond = threading.Condition()

    def acquire(self, cancel: threading.Event, idle: Callable[[], None] | None = None) -> bool:
        """Wait for a free connection (and the schedule's window); False when cancelled.
        ``idle`` is called once before waiting (to give back a kept connection)."""
        waited = False
        while not cancel.is_set():
            wait = self.schedule.seconds_to_open(self._clock.now()) if self.schedule else 0.0
            if wait > 0 or self._active >= self.limit:
                if not waited and idle is not None:
                    idle()
                waited = True
            if wait > 0:
                log.info("outside the schedule %s: waiting %.0f s", self.schedule, wait)
                if cancel.wait(min(wait, 30.0)):
                    return False
                continue
            with self._cond:
                if self._active < self.limit:
                    self._active += 1
                    return True
                self._cond.wait(0.25)
        return False

    def release(self) -> None:
        with self._cond:
            self._active = max(0, self._active - 1)
            self._cond.notify()

    def busy(self) -> None:
        """The peer said it is overloaded: one connection fewer (not below one)."""
        with self._cond:
            self._good = 0
            if self.limit > 1:
                self.limit -= 1
                self.lowest = min(self.lowest, self.limit)
                log.info("peer busy: down to %d connection(s)", self.limit)

    def ok(self) -> None:
        """An item went well: after :data:`RECOVER_AFTER` in a row, one connection more."""
        with self._cond:
            self._good += 1
            if self._good >= RECOVER_AFTER and self.limit < self.maximum:
                self.limit += 1
                self._good = 0
                self._cond.notify()
