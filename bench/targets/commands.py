"""§2's commands over a large table, and §4, progress (``big-tables-postgres.json``).

Stated criteria, where the issue gives none: prune time is linear when its cost per 1,000
rows over the thick slice is at most :data:`SLACK` times the thin slice's; its peak memory
is independent of the rows when the thick slice's is at most :data:`SLACK` times the thin
one's plus :data:`MEMORY_FLOOR_MIB`; its longest transaction that wrote is no longer than
the longest interval between two of its batches; reprocess memory is bounded when the
peak resident set of its process is at most :data:`REPROCESS_SLACK` times the peak reached
early on (by a tenth of the run, after at least a few chunks of its keyset walk).
"""

from __future__ import annotations

from typing import Any

from bench.tables.reprocess import EARLY_CHUNKS
from bench.targets.rows import Row, Section, seconds, times
from bench.targets.tables import SECTION, SOURCE
from django_klarefi.progress import DEFAULT_INTERVAL

ROWS = Section(SECTION, SOURCE)
PROGRESS = Section("§4 Progress on long commands", SOURCE)
SLACK = 1.5
MEMORY_FLOOR_MIB = 0.25
#: The reprocess's resident set includes Django's own ~60 MiB: a tighter ratio.
REPROCESS_SLACK = 1.25
HELD = "prune: longest transaction holding locks"
ERASURE = "payload erasure (KLAREFI_PAYLOAD_RETENTION)"


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    data = results.get(SOURCE, {}).get("data") or {}
    prune = data.get("prune") or {}
    slices, during = prune.get("slices"), prune.get("during_ingest")
    watched = [p for p in [*(slices or []), (during or {}).get("prune")] if p]
    erasure = (data.get("payload_erasure") or {}).get("slices")
    return [
        *_slice_rows(slices),
        _transaction_row([p for p in watched if "prune_error" not in p]),
        *_during_rows(during),
        *_erasure_rows(erasure),
        *_reprocess_rows(data.get("reprocess"), data.get("failed_rows_asked", 100_000)),
    ]


def _slice_rows(slices: list[dict[str, Any]] | None) -> list[Row]:
    """The thin and the thick slice: time per row, and peak memory."""
    linear = memory = None
    shown_linear = shown_memory = ""
    at = "two slices"
    if slices:
        thin, thick = slices
        at = f"{thin['deleted']:,} then {thick['deleted']:,} rows"
        linear = thick["ms_per_1000_rows"] / thin["ms_per_1000_rows"]
        shown_linear = (
            f"{thin['ms_per_1000_rows']:.0f} then {thick['ms_per_1000_rows']:.0f} ms per 1,000 "
            f"rows ({times(linear)})"
        )
        memory = thick["peak_mib"] / (SLACK * thin["peak_mib"] + MEMORY_FLOOR_MIB)
        shown_memory = f"{thin['peak_mib']:.2f} then {thick['peak_mib']:.2f} MiB"
    what_linear = "prune: time linear in the rows deleted"
    what_memory = "prune: peak memory independent of the rows deleted"
    target_linear = f"per 1,000 rows, thick slice ≤ {SLACK}x thin"
    target_memory = f"thick slice ≤ {SLACK}x thin + {MEMORY_FLOOR_MIB * 1024:.0f} KiB"
    return [
        ROWS.at_most(what_linear, at, linear, SLACK, target_linear, shown_linear),
        ROWS.at_most(what_memory, at, memory, 1.0, target_memory, shown_memory),
    ]


def _erasure_rows(slices: list[dict[str, Any]] | None) -> list[Row]:
    """The retention's erasure over a thin and a thick slice: the prune's own targets."""
    linear = memory = None
    shown_linear = shown_memory = per_1000 = ""
    at = "two slices"
    if slices:
        thin, thick = slices
        at = f"{thin['erased']:,} then {thick['erased']:,} rows"
        linear = thick["ms_per_1000_rows"] / thin["ms_per_1000_rows"]
        shown_linear = (
            f"{thin['ms_per_1000_rows']:.0f} then {thick['ms_per_1000_rows']:.0f} ms per 1,000 "
            f"rows ({times(linear)})"
        )
        memory = thick["peak_mib"] / (SLACK * thin["peak_mib"] + MEMORY_FLOOR_MIB)
        shown_memory = f"{thin['peak_mib']:.2f} then {thick['peak_mib']:.2f} MiB"
        per_1000 = (
            f"{thick['ms_per_1000_rows']:.0f} ms per 1,000 rows over the thick slice "
            f"({thick['erased']:,} rows in {seconds(thick['seconds'])}, "
            f"{thick['batches']:,} batches of {thick['batch_size']:,})"
        )
    return [
        ROWS.reported(f"{ERASURE}: time per 1,000 rows", at, per_1000 or None),
        ROWS.at_most(
            f"{ERASURE}: time linear in the rows erased", at, linear, SLACK,
            f"per 1,000 rows, thick slice ≤ {SLACK}x thin", shown_linear,
        ),
        ROWS.at_most(
            f"{ERASURE}: peak memory independent of the rows erased", at, memory, 1.0,
            f"thick slice ≤ {SLACK}x thin + {MEMORY_FLOOR_MIB * 1024:.0f} KiB", shown_memory,
        ),
        _transaction_row(slices or [], what=f"{ERASURE}: longest transaction holding locks",
                         where="every erasure"),
    ]  # fmt: skip


def _transaction_row(
    watched: list[dict[str, Any]], what: str = HELD, where: str = "every prune"
) -> Row:
    """The longest transaction that wrote (held row locks), against the longest batch."""
    target = "no longer than one batch"
    if not watched or any(p["sampler_error"] for p in watched):
        return ROWS.check(what, where, None, target)
    held = max(p["longest_writing_transaction_seconds"] for p in watched)
    batch = max(p["longest_batch_seconds"] or p["seconds"] for p in watched)
    passed = all(
        p["longest_writing_transaction_seconds"]
        <= (p["longest_batch_seconds"] or p["seconds"]) + p["interval_seconds"]
        for p in watched
    )
    shown = (
        f"{seconds(held)}; longest batch {seconds(batch)} "
        f"({sum(p['batches'] for p in watched):,} batches of {watched[0]['batch_size']:,}, "
        f"{sum(p['transactions_seen'] for p in watched):,} transactions seen, sampled every "
        f"{seconds(watched[0]['interval_seconds'])}; longest of any kind: "
        f"{seconds(max(p['longest_transaction_seconds'] for p in watched))})"
    )
    return ROWS.check(what, where, passed, target, shown)


def _during_rows(during: dict[str, Any] | None) -> list[Row]:
    passed = rate = None
    shown = ""
    if during:
        pruned = during["prune"]
        answers = during["before"]["answers"] + during["during"]["answers"]
        bad = during["before"]["not_2xx"] + during["during"]["not_2xx"]
        passed = bad == 0 and "prune_error" not in pruned
        shown = (
            f"{during['during']['answers']:,} answers during the prune, "
            f"{answers - bad:,} of {answers:,} 2xx in all"
            + (
                f"; the prune failed: {pruned['prune_error']}"
                if "prune_error" in pruned
                else f"; it deleted {pruned['deleted']:,} rows in {seconds(pruned['seconds'])}"
            )
        )
        rate = (
            f"receiver {times(during['klarefi_rate_during_vs_before'])} its rate before "
            f"({during['during']['klarefi_per_second']:.0f}/s vs "
            f"{during['before']['klarefi_per_second']:.0f}/s), baseline "
            f"{times(during['baseline_rate_during_vs_before'])}; receiver/baseline "
            f"{during['during']['ratio']:.2f} during, {during['before']['ratio']:.2f} before"
        )
    at = "a third slice"
    return [
        ROWS.check(
            "ingest during a prune: every answer 2xx", at, passed, "every answer 2xx", shown
        ),
        ROWS.reported("ingest rate during the prune vs before", at, rate),
    ]


def _reprocess_rows(measured: dict[str, Any] | None, asked: int) -> list[Row]:
    at = f"{(measured['failed_events'] if measured else asked):,} failed events"
    bounded = progress = None
    shown = progress_shown = ""
    if measured:
        peak = measured["peak_rss_mib"]
        early = measured["early_peak_rss_mib"] or peak
        bounded = peak / early
        ended = "" if measured["exit_code"] == 0 else (
            f"; it exited {measured['exit_code']}: {measured['last_stderr_line']}"
        )  # fmt: skip
        shown = (
            f"{peak:.0f} MiB peak resident set; {early:.0f} MiB by "
            f"{seconds(measured['early_peak_at_seconds'] or 0)} of {seconds(measured['seconds'])}"
            f" ({measured['reprocessed']:,} reprocessed, {measured['events_per_second']:.0f} "
            f"events/s{ended})"
        )
        expected = int(measured["seconds"] // DEFAULT_INTERVAL)
        last = measured["last_progress_line"]
        progress = measured["progress_lines"] >= max(1, expected) and "(100%)" in last
        progress_shown = (
            f"{measured['progress_lines']} plain line(s) over {seconds(measured['seconds'])} "
            f"(one every {DEFAULT_INTERVAL:g} s and one at the end); last: `{last}`"
        )
    what_memory = "klarefi_reprocess --failed: peak memory bounded"
    what_progress = "klarefi_reprocess --failed: progress shown, not a terminal"
    target_memory = f"whole run ≤ {REPROCESS_SLACK}x its early peak"
    target_progress = "rows done and rate, periodically and at the end"
    return [
        ROWS.at_most(what_memory, at, bounded, REPROCESS_SLACK, target_memory, shown),
        PROGRESS.check(what_progress, at, progress, target_progress, progress_shown),
    ]


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    criteria = (
        f"Stated criteria: prune time is linear when its cost per 1,000 rows over the thick "
        f"slice is at most {SLACK}x the thin slice's; its memory is independent of the rows "
        f"when the thick slice's peak is at most {SLACK}x the thin one's plus "
        f"{MEMORY_FLOOR_MIB * 1024:.0f} KiB; the longest transaction that wrote (sampled in "
        "pg_stat_activity from another connection) is at most the longest interval between "
        "two batches. Prune memory: tracemalloc's peak (Python allocations; the prunes run "
        "under it, which slows them). Reprocess memory is bounded when the peak resident set "
        f"of its process over the whole run is at most {REPROCESS_SLACK}x the peak reached "
        f"early on (by a tenth of the run, and after at least {EARLY_CHUNKS} chunks of its "
        "keyset walk); it runs in a process of its own, not under tracemalloc."
    )
    return {SECTION: [criteria]}
