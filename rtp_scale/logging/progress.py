"""Progress that suits where it is written: a tqdm bar on a terminal, sparse plain lines in a log file.

Under Slurm (or ``> log.txt``, or a pipe) stderr is a file, and a tqdm bar there is a carriage-return update
several times a second: a long evaluation leaves thousands of them in the log. :func:`open_progress` keeps the bar
when the stream is a terminal and otherwise prints one plain, flushed line at most every ``interval_s``
seconds (plus the first and the last update)::

    distill 120/400 (30%) | loss=0.412 inner=0.198 | 2.05 step/s | elapsed 0:58 | ETA 2:16

The interval defaults to 30 s; ``RTP_PROGRESS_INTERVAL=<seconds>`` in the environment changes it (e.g. in a
Slurm batch script). Both kinds share tqdm's ``update`` / ``set_postfix`` / ``write`` / ``close``; call
``set_postfix`` before ``update`` so that a plain line carries the values of the step it reports.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Protocol, TextIO

from rtp_scale.errors import UserError

INTERVAL_ENV = "RTP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


class Progress(Protocol):
    """What a caller of :func:`open_progress` may use (a subset of ``tqdm``)."""

    def update(self, n: int = 1) -> Any: ...
    def set_postfix(self, **values: Any) -> Any: ...
    def write(self, text: str, file: TextIO | None = None) -> Any: ...
    def close(self) -> None: ...


def default_interval_s() -> float:
    """Seconds between plain lines: ``$RTP_PROGRESS_INTERVAL`` when set, else 30."""
    raw = os.environ.get(INTERVAL_ENV, "")
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise UserError(f"{INTERVAL_ENV}={raw!r} must be a number of seconds >= 0")
    return value


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def open_progress(*, total: int, desc: str, unit: str, initial: int = 0, enabled: bool = True, leave: bool = True,
                  stream: TextIO | None = None, interval_s: float | None = None,
                  clock: Callable[[], float] = time.monotonic) -> Progress:
    """A progress reporter on ``stream`` (default: stderr): a tqdm bar on a terminal, else :class:`PlainProgress`.

    ``enabled=False`` (progress off, or not the logging rank) gives one that prints nothing. ``leave`` only
    matters for the bar (whether it stays on screen once closed); ``clock`` is for tests.
    """
    stream = sys.stderr if stream is None else stream
    if enabled and is_terminal(stream):
        from tqdm.auto import tqdm  # imported here: most callers never show a bar

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=stream)
    return PlainProgress(total=total, initial=initial, desc=desc, unit=unit, enabled=enabled, stream=stream,
                         interval_s=default_interval_s() if interval_s is None else interval_s, clock=clock)


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainProgress:
    """Plain progress lines for a log file: the first update, then at most one per ``interval_s``, then the last."""

    def __init__(self, *, total: int, initial: int, desc: str, unit: str, enabled: bool, stream: TextIO,
                 interval_s: float, clock: Callable[[], float]) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.enabled, self.stream, self.interval_s, self.clock = enabled, stream, interval_s, clock
        self.postfix: dict[str, Any] = {}
        self._initial = initial  # the rate counts this process's work only (a resumed run starts past 0)
        self._started = clock()
        self._last_line_at: float | None = None
        self._last_line_n: int | None = None
        self._closed = False

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.enabled:
            return
        now = self.clock()
        if self._last_line_at is None or now - self._last_line_at >= self.interval_s or self.n >= self.total:
            self._write(now)

    def write(self, text: str, file: TextIO | None = None) -> None:
        """A message line between the progress lines (tqdm's ``write`` on a terminal); ``file`` is ignored: the
        line goes where the progress goes. Nothing when progress is off."""
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled and self.n > self._initial and self._last_line_n != self.n:
            self._write(self.clock())

    def line(self, now: float) -> str:
        """The progress line as of ``now``: step/total, postfix values, rate, elapsed time and ETA."""
        parts = [f"{self.desc} {self.n}/{self.total}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        if self.postfix:
            parts.append(" ".join(f"{key}={value}" for key, value in self.postfix.items()))
        elapsed = max(now - self._started, 0.0)
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else math.inf
        if rate >= 1 and math.isfinite(rate):
            parts.append(f"{rate:.2f} {self.unit}/s")
        elif 0 < rate < 1:  # slow steps read better as seconds per step
            parts.append(f"{1 / rate:.1f} s/{self.unit}")
        remaining = max(self.total - self.n, 0)
        eta = remaining / rate if rate > 0 and math.isfinite(rate) else (0.0 if remaining == 0 else None)
        parts.append(f"elapsed {_clock_text(elapsed)}")
        parts.append(f"ETA {_clock_text(eta)}" if eta is not None else "ETA ?")
        return " | ".join(parts)

    def _write(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self._last_line_at, self._last_line_n = now, self.n

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
