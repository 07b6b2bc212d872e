"""Tiles of the report's galleries: worst held-out cases, and phantoms across patterns for realism.

The failure gallery takes the held-out predictions of :mod:`training.evaluate`; the phantom gallery
draws its own phantoms from :data:`GALLERY_SEED0` (never used for training or evaluation).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from training import evaluate as ev
from training.data import resample_labels
from training.metrics import candidate_hits
from training.phantoms import Phantom, generate
from training.report_plots import Tile

log = logging.getLogger(__name__)
GALLERY_SEED0 = 12_000_000
# (pattern, matrix, nodules, extra generate() arguments, label) of the phantom gallery, 4 per row.
GALLERY_SPECS: tuple[tuple[str, int, str, dict, str], ...] = (
    ("normal", 128, "none", {}, ""), ("normal", 256, "cold", {}, ""), ("graves", 128, "cold", {}, ""),
    ("graves", 256, "none", {}, ""), ("thyroiditis", 128, "none", {}, ""), ("thyroiditis", 256, "cold", {}, ""),
    ("multinodular", 128, "mixed", {}, ""), ("multinodular", 256, "mixed", {}, ""),
    ("toxic_adenoma", 128, "none", {}, ""), ("toxic_adenoma", 256, "none", {}, ""), ("normal", 128, "hot", {}, ""),
    ("normal", 256, "mixed", {}, ""), ("normal", 128, "cold", {"isotope": "i123"}, "I-123"),
    ("graves", 128, "none", {"isotope": "i123"}, "I-123"), ("normal", 128, "cold", {"markers": True}, "markers"),
    ("normal", 128, "none", {"salivary_scale": 2.5}, "salivary x2.5"),
)
TRUTH_LEGEND = (("true gland", "truth"), ("predicted gland", "pred"), ("true cold nodule", "cold"),
                ("cold-nodule candidate", "cand"))


def _nodule_summary(ph: Phantom) -> str:
    cold = sorted(n.diameter_mm for n in ph.nodules if n.kind == "cold")
    hot = sorted(n.diameter_mm for n in ph.nodules if n.kind == "hot")
    parts = ([f"cold {', '.join(f'{d:.0f}' for d in cold)} mm"] if cold else []) + \
            ([f"hot {', '.join(f'{d:.0f}' for d in hot)} mm"] if hot else [])
    return "; ".join(parts) or "no nodule"


def phantom_tiles() -> list[Tile]:
    """The :data:`GALLERY_SPECS` phantoms, without overlays, captioned with their truth."""
    tiles = []
    for i, (pattern, matrix, nodules, extra, label) in enumerate(GALLERY_SPECS):
        ph = generate(GALLERY_SEED0 + i, matrix=matrix, pattern=pattern, nodules=nodules, **extra)
        head = f"{pattern} {matrix}x{matrix}" + (f" {label}" if label else "")
        tiles.append(Tile(ph.image, [head, f"{ph.total_counts / 1e3:.0f} k counts, max {ph.image.max():.0f}",
                                     _nodule_summary(ph)]))
    return tiles


def candidate_mask(prob: np.ndarray, gland: np.ndarray, probability: float, min_area_px: int,
                   shape: tuple[int, int]) -> np.ndarray:
    """Frame-size mask of the candidates :func:`training.evaluate.detect` would report."""
    lab, n = ev.connected_components((prob > probability) & ev.dilate(gland, 2))
    keep = [k for k in range(1, n + 1) if (lab == k).sum() >= min_area_px]
    return resample_labels(np.isin(lab, keep).astype(np.uint8), shape) > 0


def failure_tiles(phs: Sequence[Phantom], seeds: Sequence[int], preds: Sequence[tuple], rows: Sequence[tuple],
                  thresholds: dict, per_kind: int = 4) -> list[Tile]:
    """Worst held-out cases: lowest gland Dice, missed cold nodules >= 10 mm, most confident false positives.

    Parameters
    ----------
    phs, seeds, preds, rows
        Held-out phantoms, their seeds, :func:`training.evaluate.predict` outputs and
        :func:`training.evaluate.segmentation_rows`.
    thresholds : dict
        Nodule ``probability`` and ``min_area_px`` as shipped.
    per_kind : int
        Tiles per kind of failure (an image is shown once).

    Returns
    -------
    list of Tile
        ``3 * per_kind`` tiles at most, in the order Dice, missed, false positive.
    """
    p, a = thresholds["probability"], thresholds["min_area_px"]
    missed, false_pos = [], []
    for i, (ph, pr) in enumerate(zip(phs, preds)):
        dets = ev.detect(pr[2], pr[1], p, a, ph.image.shape)
        hits, fp, fp_hot = ev.match(dets, ph)
        cold = [n for n in ph.nodules if n.kind == "cold"]
        big = [n.diameter_mm for n, h in zip(cold, hits) if not h and n.diameter_mm >= 10]
        if big:
            missed.append((-max(big), i, f"missed cold {', '.join(f'{d:.0f}' for d in big)} mm"))
        if fp:
            peak = max(d[2] for d, h in zip(dets, candidate_hits(dets, ph)) if not h)
            false_pos.append((-peak, i, f"{fp} FP, peak {peak:.2f}" + (f" ({fp_hot} on hot)" if fp_hot else "")))
    worst_dice = [(r[1], i, f"lowest Dice {r[1]:.3f}") for i, r in enumerate(rows)]
    chosen: list[tuple[int, str]] = []
    for group in (sorted(worst_dice), sorted(missed), sorted(false_pos)):
        fresh = [(i, why) for _, i, why in group if i not in {c[0] for c in chosen}]
        chosen += fresh[:per_kind]
    tiles = []
    for i, why in chosen:
        ph, pr, r = phs[i], preds[i], rows[i]
        tiles.append(Tile(ph.image, [f"{why}", f"seed {seeds[i]} {ph.pattern} {ph.image.shape[0]}",
                                     f"Dice {r[1]:.3f}, share err {r[4]:.1f} pp"],
                          {"truth": ph.lobe_mask > 0, "pred": pr[0] > 0, "cold": ph.nodule_mask > 0,
                           "cand": candidate_mask(pr[2], pr[1], p, a, ph.image.shape)}))
    log.info("failure gallery: %d tiles (%d images miss a >= 10 mm nodule, %d have false positives)",
             len(tiles), len(missed), len(false_pos))
    return tiles
