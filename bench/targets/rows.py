"""One row of the report: a target, where it was measured, the value, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass

MET = "met"
MISSED = "missed"
NOT_MEASURED = "not measured"
#: A measurement shown beside the targets, with no target of its own.
REPORTED = "reported"
VERDICTS = (MET, MISSED, NOT_MEASURED, REPORTED)


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


def judged(
    section: str,
    what: str,
    at: str,
    value: float | None,
    *,
    limit: float,
    at_least: bool,
    shown: str,
    target: str,
    source: str,
) -> Row:
    """A row whose verdict compares ``value`` with ``limit``; not measured when None."""
    if value is None:
        return Row(section, what, at, "", target, NOT_MEASURED, source)
    met = value >= limit if at_least else value <= limit
    return Row(section, what, at, shown, target, MET if met else MISSED, source)


def checked(section: str, what: str, at: str, passed: bool | None, *, shown: str, target: str,
            source: str) -> Row:  # fmt: skip
    """A row for a yes/no target (a check that passed or not); not measured when None."""
    if passed is None:
        return Row(section, what, at, "", target, NOT_MEASURED, source)
    return Row(section, what, at, shown, target, MET if passed else MISSED, source)


def reported(section: str, what: str, at: str, shown: str | None, *, source: str) -> Row:
    """A measurement without a target of its own."""
    if shown is None:
        return Row(section, what, at, "", "(none)", NOT_MEASURED, source)
    return Row(section, what, at, shown, "(none)", REPORTED, source)


def times(value: float) -> str:
    """A ratio, as the report writes it: ``0.81x``."""
    return f"{value:.2f}x"


def seconds(value: float) -> str:
    """A duration: ``0.235 s``; ``12 ms`` under a tenth of a second, ``8.8 ms`` under 10 ms."""
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 0.1 else f"{value:.3f} s"
