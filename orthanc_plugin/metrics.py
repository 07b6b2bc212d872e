"""Figures for Orthanc's Prometheus endpoint (``GET /tools/metrics-prometheus``).

Orthanc's plugin metrics are plain name/value pairs without labels, so labels are folded into
the names (``ai_studies_done``, ``ai_processing_seconds_thyroid_bucket_le_1``) and the histogram
is written as its cumulative buckets, sum and count.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

BUCKETS_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


def metric_name(*parts: str) -> str:
    """A Prometheus-safe name from parts (``ai``, ``processing_seconds``, ``thyroid``...)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", "_".join(p for p in parts if p))


def version_number(version: str) -> float:
    """1.2.3 -> 1002003: a model version as one gauge value (MAJOR*1e6 + MINOR*1e3 + PATCH)."""
    major, minor, patch = (int(v) for v in version.split("."))
    return float(major * 1_000_000 + minor * 1_000 + patch)


class ProcessingHistogram:
    """Processing time per pipeline, as a Prometheus histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, pipeline: str, seconds: float) -> None:
        """Record one unit of work."""
        with self._lock:
            counts = self._counts.setdefault(pipeline, [0] * (len(BUCKETS_SECONDS) + 1))
            for i, bound in enumerate(BUCKETS_SECONDS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[pipeline] = self._sums.get(pipeline, 0.0) + seconds

    def values(self) -> dict[str, float]:
        """{metric name: value} of every bucket, sum and count."""
        found: dict[str, float] = {}
        with self._lock:
            for pipeline, counts in self._counts.items():
                base = metric_name("ai_processing_seconds", pipeline)
                for bound, count in zip(BUCKETS_SECONDS, counts):
                    found[metric_name(base, "bucket_le", str(bound))] = float(count)
                found[metric_name(base, "bucket_le_inf")] = float(counts[-1])
                found[metric_name(base, "count")] = float(counts[-1])
                found[metric_name(base, "sum")] = round(self._sums[pipeline], 4)
        return found


def node_metrics(queue_depth: int, states: Mapping[str, int], served: Mapping[str, str],
                 histogram: ProcessingHistogram) -> dict[str, float]:
    """Every metric the node publishes: queue, studies by state, model in use, processing times."""
    found = {"ai_queue_depth": float(queue_depth)}
    for state in ("queued", "running", "done", "failed", "skipped"):
        found[metric_name("ai_studies", state)] = float(states.get(state, 0))
    for task, version in served.items():
        found[metric_name("ai_model_version", task)] = version_number(version)
    found.update(histogram.values())
    return found
