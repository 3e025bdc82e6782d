"""Progress of the long commands (``klarefi_reprocess``, ``klarefi_prune_events``).

On a terminal, with ``tqdm`` installed (``django-klarefi[progress]``), a bar: rows done,
rate, and the time left. Otherwise (cron, CI logs, or no ``tqdm``) a plain line every
:data:`DEFAULT_INTERVAL` seconds and one at the end, such as::

    reprocess: 12000 of 100000 events (12%), 850/s, about 1m 44s left

Progress goes to the command's stderr, so its stdout stays the listing it always was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandParser

try:
    from tqdm import tqdm
except ImportError:  # the optional extra is not installed: plain lines
    tqdm = None  # type: ignore[assignment,misc,unused-ignore]

__all__ = ["DEFAULT_INTERVAL", "Progress", "add_quiet_argument", "duration_text", "for_command"]

#: Seconds between two plain progress lines.
DEFAULT_INTERVAL = 10.0


class Progress:
    """Rows done out of ``total``, shown on ``stream`` while a command works through them.

    Use as a context manager; call :meth:`advance` as rows are done and :meth:`write` for
    any other line the command prints meanwhile (on a terminal it keeps the bar below the
    line). ``enabled=False`` (``--quiet``, ``-v 0``) shows nothing. ``clock`` is the
    monotonic clock the rate and the plain lines' interval are measured with.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: IO[str],
        description: str,
        unit: str = "events",
        enabled: bool = True,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.description = description
        self.unit = unit
        self.enabled = enabled and total > 0
        self.interval = interval
        self.clock = clock
        self.started = self.last_line = clock()
        self.shown = 0  # rows done at the last plain line
        self.bar: Any = None
        if self.enabled and tqdm is not None and _is_terminal(stream):
            self.bar = tqdm(
                total=total, file=stream, desc=description, unit=f" {unit}", dynamic_ncols=True
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, rows: int = 1) -> None:
        """Count ``rows`` more as done."""
        self.done += rows
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(rows)
        elif self.clock() - self.last_line >= self.interval:
            self._plain_line()

    def write(self, line: str, out: Callable[[str], Any]) -> None:
        """Print ``line`` with ``out`` (the command's stdout) without garbling the bar."""
        if self.bar is not None:
            with self.bar.external_write_mode():
                out(line)
        else:
            out(line)

    def close(self) -> None:
        """End the bar, or print the final plain line (once)."""
        if not self.enabled:
            return
        self.enabled = False
        if self.bar is not None:
            self.bar.close()
        elif self.shown != self.done:
            self._plain_line()

    def _plain_line(self) -> None:
        now = self.clock()
        self.last_line, self.shown = now, self.done
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = f"{self.description}: {self.done} of {self.total} {self.unit}"
        line += f" ({100 * self.done // self.total}%)"
        if rate > 0:
            line += f", {rate:.0f}/s"
            if self.done < self.total:
                line += f", about {duration_text((self.total - self.done) / rate)} left"
        if self.done >= self.total:
            line += f", done in {duration_text(elapsed)}"
        self.stream.write(line + "\n")
        self.stream.flush()


def add_quiet_argument(parser: CommandParser) -> None:
    """The ``--quiet`` option of a command that shows progress."""
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="Show no progress (as -v 0 does). The listing and summary are still printed.",
    )


def for_command(
    command: BaseCommand, total: int, options: dict[str, Any], *, description: str
) -> Progress:
    """The progress of ``command`` over ``total`` rows, on its stderr.

    Off with ``--quiet`` or ``--verbosity 0``.
    """
    # The stream under Django's OutputWrapper, which would end each of tqdm's redraws
    # with a newline.
    stream = cast(IO[str], getattr(command.stderr, "_out", command.stderr))
    enabled = not options.get("quiet") and options.get("verbosity", 1) > 0
    return Progress(total, stream=stream, description=description, enabled=enabled)


def duration_text(seconds: float) -> str:
    """``seconds`` the short way: "45s", "1m 44s", "2h 05m"."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
