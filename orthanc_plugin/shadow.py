"""Shadow runs: compare a candidate model's findings with the served model's, invisibly.

A shadow model runs beside the served version on every matching study; nothing it finds is
written as DICOM. Its agreement with the served version is recorded per study and summed per
model file, so a department can decide to promote it (or not).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .findings import Findings


def _dice(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _gland(findings: Findings) -> np.ndarray | None:
    masks = [lobe.mask for lobe in findings.lobes]
    return np.logical_or.reduce(masks) if masks else None


def compare(live: Findings, shadow: Findings) -> dict:
    """Agreement of two findings of the same image: Dice of gland and lobes, nodule matches.

    Two candidates agree when each one's centroid lies inside the other's equivalent radius
    (plus 2 pixels), each candidate matched at most once.
    """
    lobes = {side: round(_dice(getattr(live.lobe(side), "mask", None), getattr(shadow.lobe(side), "mask", None)), 4)
             for side in ("right", "left")}
    unmatched = list(shadow.nodules)
    matched = 0
    for nodule in live.nodules:
        for other in unmatched:
            distance = math.dist(nodule.centroid_rc, other.centroid_rc)
            if distance <= max(nodule.diameter_px, other.diameter_px) / 2 + 2:
                unmatched.remove(other)
                matched += 1
                break
    either = len(live.nodules) + len(shadow.nodules) - matched
    return {"gland_dice": round(_dice(_gland(live), _gland(shadow)), 4), "lobe_dice": lobes,
            "nodules_live": len(live.nodules), "nodules_shadow": len(shadow.nodules),
            "nodules_matched": matched,
            "nodule_agreement": round(matched / either, 4) if either else 1.0}


class ShadowLedger:
    """Sums of comparisons per shadow model file since the node started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, dict] = {}

    def add(self, file_name: str, version: str, comparison: dict) -> None:
        """Add one study's comparison for a shadow model."""
        with self._lock:
            entry = self._sums.setdefault(file_name, {"version": version, "studies": 0, "gland_dice": 0.0,
                                                      "nodule_agreement": 0.0})
            entry["studies"] += 1
            entry["gland_dice"] += comparison["gland_dice"]
            entry["nodule_agreement"] += comparison["nodule_agreement"]

    def summary(self) -> list[dict]:
        """Per shadow model: studies compared, mean gland Dice and mean nodule agreement."""
        with self._lock:
            return [{"file": name, "version": e["version"], "studies": e["studies"],
                     "mean_gland_dice": round(e["gland_dice"] / e["studies"], 4),
                     "mean_nodule_agreement": round(e["nodule_agreement"] / e["studies"], 4)}
                    for name, e in sorted(self._sums.items())]
