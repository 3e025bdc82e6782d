"""Ingest in process: the receiver and the baseline take turns on new events.

The baseline's table stays small whatever the size of the events table, so the ratio
receiver/baseline, taken against the same ratio on the empty table, isolates what the
events table's size does to ingest from what the (shared) machine does to both.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.run import Requests, send_all


@dataclass
class IngestSamples:
    """Events per second of each view, per chunk, and every answer that was not 2xx."""

    klarefi: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    answers: int = 0
    not_2xx: list[str] = field(default_factory=list)

    def run(self, handler: Any, requests: Requests, events: int, chunk: int = 10) -> None:
        """``events`` new events per view, ``chunk`` at a time, the views alternating."""
        for number in range(max(1, events // chunk)):
            rates = {}
            views = ("baseline", "klarefi") if number % 2 == 0 else ("klarefi", "baseline")
            for view in views:
                environs = requests.environs(view, requests.new_bodies(chunk))
                began = time.perf_counter()
                statuses = send_all(handler, environs)
                rates[view] = chunk / (time.perf_counter() - began)
                self.answers += len(statuses)
                self.not_2xx += [status for status in statuses if not status.startswith("2")]
            self.klarefi.append(rates["klarefi"])
            self.baseline.append(rates["baseline"])
            self.ratios.append(rates["klarefi"] / rates["baseline"])

    def summary(self) -> dict[str, Any]:
        """Medians over the chunks, and the answers."""
        return {
            "ratio": statistics.median(self.ratios),
            "klarefi_per_second": statistics.median(self.klarefi),
            "baseline_per_second": statistics.median(self.baseline),
            "chunks": len(self.ratios),
            "answers": self.answers,
            "not_2xx": len(self.not_2xx),
            "not_2xx_examples": sorted(set(self.not_2xx))[:5],
        }


def measure_ingest(handler: Any, requests: Requests, events: int) -> dict[str, Any]:
    """One interleaved run of ``events`` new events per view, summarised."""
    samples = IngestSamples()
    samples.run(handler, requests, events)
    return samples.summary()
