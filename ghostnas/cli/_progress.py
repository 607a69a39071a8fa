"""Progress of a long command (search, train, latency table): one helper for every command.

On a terminal it is a tqdm bar that exists from the start (so the first rate is measured over a
real interval, not over the microseconds between creating and updating the bar) and whose clock
ticks every second while a long step runs. Without a terminal (output to a file, nohup, CI) a bar
would be invisible or garbage, so it prints one plain line per finished step instead, with the
elapsed time and, once two steps of this run have finished, an estimate of the time left.

Use::

    with ProgressDisplay(total=30, unit="trial", initial=done_before) as display:
        display.line("what is about to happen")        # always printed (above the bar on a tty)
        ...
        display.step(done, status="best 0.81", line="trial 3 ok: 0.81, 25.0 s")
    # lines and the bar go to stderr; the caller prints its final summary on stdout

``enabled=False`` (``--no-progress``) keeps :meth:`line` and drops the bar and the step lines.
:meth:`log_handler` gives a :class:`logging.Handler` whose records are printed without breaking
the bar (the library logs; only the CLI prints).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["ProgressDisplay", "format_seconds"]

# Steps of this run needed before a rate or a time left is shown: the first step of a search is
# the widest network and the first epoch includes start-up, so one step says little.
MIN_STEPS_FOR_ETA = 2


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: a duration for a person."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _sized_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a bar can be drawn on: a pseudo-terminal with no size
    (``script``, some CI runners) makes tqdm draw nothing, so it gets plain lines instead."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class ProgressDisplay:
    """A bar on a terminal, plain lines otherwise (see the module docstring).

    Args:
        total: Steps wanted in all (trials, epochs, timings).
        unit: What a step is called (``trial``, ``epoch``).
        desc: Bar label (terminal only).
        initial: Steps already done before this run (a resumed search); rates and estimates
            count only this run's steps.
        enabled: False: no bar and no step lines (``--no-progress``); :meth:`line` still prints.
        stream: Where to write (default: stderr).
        tty: Force terminal or plain mode (default: whether ``stream`` is a terminal with a size).
    """

    def __init__(
        self,
        total: int,
        unit: str,
        desc: str = "",
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.total = total
        self.unit = unit
        self.initial = initial
        self.done = initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else _sized_terminal(self.stream))
        self._t0 = time.perf_counter()
        self._bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc or None,
                unit=unit,
                file=self.stream,
                dynamic_ncols=True,
                smoothing=0.3,
            )
            self._ticker = threading.Thread(target=self._tick, name="progress-clock", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Redraw the bar every second so its clock moves during a long step."""
        while not self._stop.wait(1.0):
            bar = self._bar
            if bar is not None:
                bar.refresh()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def eta(self) -> float | None:
        """Seconds left at this run's mean pace, once :data:`MIN_STEPS_FOR_ETA` steps are done."""
        steps = self.done - self.initial
        if steps < MIN_STEPS_FOR_ETA or self.done >= self.total:
            return None
        return self.elapsed() / steps * (self.total - self.done)

    def line(self, text: str) -> None:
        """Print ``text`` as its own line (above the bar on a terminal), whatever ``enabled`` says."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def step(self, done: int, status: str = "", line: str | None = None) -> None:
        """``done`` steps are now finished.

        Args:
            done: Steps finished in all (including ``initial``); never moves backwards.
            status: Short running state shown beside the bar (terminal only).
            line: What finished, printed as one plain line without a terminal, followed by the
                count, the elapsed time and the estimate of the time left.
        """
        self.done = max(self.done, min(done, self.total))
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
            if status:
                self._bar.set_postfix_str(status, refresh=False)
            self._bar.refresh()
            return
        if line is None:
            return
        eta = self.eta()
        left = f", about {format_seconds(eta)} left" if eta is not None else ""
        self.line(
            f"{line} [{self.done}/{self.total} {self.unit}s, {format_seconds(self.elapsed())} elapsed{left}]"
        )

    def log_handler(self, prefix: str = "") -> logging.Handler:
        """A handler that prints log records through :meth:`line` (they do not break the bar)."""
        display = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    display.line(self.format(record))
                except Exception:  # a broken stream must not kill the run
                    self.handleError(record)

        handler = _Handler()
        handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
        return handler

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
