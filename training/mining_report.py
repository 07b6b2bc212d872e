"""The report of a mining run: pairs written, and every item not converted with its reason.

Items are named by pseudonym only (see :func:`training.mining.pseudonym`); the reasons given
here are already scrubbed of identifiers by the caller.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One image/mask pair written: pseudonym, annotation format, label pixel counts, notes."""

    id: str
    format: str
    thyroid_pixels: int
    nodule_pixels: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """One item not converted: what it is (study, image, seg, rtstruct, roi-folder), why."""

    what: str
    id: str
    reason: str
    image: str | None = None


@dataclass
class Report:
    """Collects pairs and problems, logs each as it comes, writes report.json and report.md."""

    pairs: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def converted(self, pid: str, fmt: str, notes: list[str], mask: np.ndarray) -> None:
        """Record (and log) a pair written from an annotation of format ``fmt``."""
        pair = Pair(pid, fmt, int((mask == 1).sum()), int((mask == 2).sum()), tuple(notes))
        self.pairs.append(pair)
        logger.info("%s: pair written from %s (%d thyroid, %d cold-nodule pixels)%s", pid, fmt,
                    pair.thyroid_pixels, pair.nodule_pixels, f"; {'; '.join(notes)}" if notes else "")

    def failed(self, what: str, pid: str, reason: str, *, image: str | None = None) -> None:
        """Record (and log) an item that could not be converted."""
        self.problems.append(Problem(what, pid, reason, image))
        logger.warning("%s %s not converted: %s", what, pid, reason)

    def write(self, out: Path) -> None:
        """Write ``out/report.json`` and ``out/report.md``."""
        document = {"pairs": [asdict(p) for p in self.pairs],
                    "not_converted": [asdict(p) for p in self.problems],
                    "counts": {"pairs": len(self.pairs), "not_converted": len(self.problems)}}
        (out / "report.json").write_text(json.dumps(document, indent=2) + "\n")
        summary = f"{len(self.pairs)} pair(s) written, {len(self.problems)} item(s) not converted."
        lines = ["# Training-set export", "", summary, "", "## Pairs", "",
                 "| id | format | thyroid px | cold-nodule px | notes |", "|---|---|---|---|---|"]
        lines += [f"| {p.id} | {p.format} | {p.thyroid_pixels} | {p.nodule_pixels} | {_cell('; '.join(p.notes))} |"
                  for p in self.pairs]
        lines += ["", "## Not converted", "", "| what | id | image | reason |", "|---|---|---|---|"]
        lines += [f"| {p.what} | {p.id} | {p.image or ''} | {_cell(p.reason)} |" for p in self.problems]
        (out / "report.md").write_text("\n".join(lines) + "\n")


def _cell(text: str) -> str:
    """Escape a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
