"""One row of the report: a target, where it was measured, the value, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass

MET = "met"
MISSED = "missed"
NOT_MEASURED = "not measured"
#: A measurement shown beside the targets, with no target of its own.
REPORTED = "reported"
VERDICTS = (MET, MISSED, NOT_MEASURED, REPORTED)
#: The target column of a row that has none.
NO_TARGET = "(none)"


@dataclass(frozen=True)
class Row:
    """A row of ``latest.md``. ``source`` names the result file it comes from."""

    section: str
    what: str
    at: str
    measured: str
    target: str
    verdict: str
    source: str

    def __post_init__(self) -> None:
        assert self.verdict in VERDICTS, self.verdict

    @property
    def has_target(self) -> bool:
        return self.target != NO_TARGET


@dataclass(frozen=True)
class Section:
    """Builds the rows of one section of the report that come from one result file.

    Each method takes the value as measured, or None when it was not: the row is then
    *not measured*, never left out.
    """

    title: str
    source: str

    def at_most(self, what: str, at: str, value: float | None, limit: float, target: str,
                shown: str = "") -> Row:  # fmt: skip
        """A target met when ``value`` is at most ``limit``."""
        return self.check(what, at, None if value is None else value <= limit, target, shown)

    def at_least(self, what: str, at: str, value: float | None, limit: float, target: str,
                 shown: str = "") -> Row:  # fmt: skip
        """A target met when ``value`` is at least ``limit``."""
        return self.check(what, at, None if value is None else value >= limit, target, shown)

    def check(self, what: str, at: str, passed: bool | None, target: str,
              shown: str = "") -> Row:  # fmt: skip
        """A target met when ``passed``."""
        if passed is None:
            return Row(self.title, what, at, "", target, NOT_MEASURED, self.source)
        return Row(self.title, what, at, shown, target, MET if passed else MISSED, self.source)

    def reported(self, what: str, at: str, shown: str | None) -> Row:
        """A measurement without a target of its own."""
        verdict = NOT_MEASURED if shown is None else REPORTED
        return Row(self.title, what, at, shown or "", NO_TARGET, verdict, self.source)


def times(value: float) -> str:
    """A ratio, as the report writes it: ``0.81x``."""
    return f"{value:.2f}x"


def seconds(value: float) -> str:
    """A duration: ``0.235 s``; ``12 ms`` under a tenth of a second, ``8.8 ms`` under 10 ms."""
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 0.1 else f"{value:.3f} s"
