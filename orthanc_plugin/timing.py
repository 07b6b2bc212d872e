"""Per-phase wall-clock timings of one unit of work (decode, inference, post-processing, ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates milliseconds per named phase."""

    def __init__(self) -> None:
        self.phases_ms: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block and add it to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.phases_ms[name] = self.phases_ms.get(name, 0.0) + elapsed

    def rounded(self) -> dict[str, float]:
        """Phases rounded to 0.1 ms, for JSON."""
        return {name: round(ms, 1) for name, ms in self.phases_ms.items()}
