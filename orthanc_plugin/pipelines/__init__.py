"""The pipelines the rules can name. One grep of PIPELINES shows everything that exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..findings import Findings
from . import thyroid


@dataclass(frozen=True)
class Pipeline:
    """A named unit: which model tasks it needs and the function that runs it."""

    name: str
    run: Callable[..., Findings]
    tasks: tuple[str, ...]


PIPELINES: dict[str, Pipeline] = {
    "thyroid": Pipeline("thyroid", thyroid.run, thyroid.TASKS),
}
