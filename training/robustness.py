"""Robustness subsets of the held-out evaluation: markers, salivary glands, 256x256, I-123, toxic adenoma.

Each subset is drawn by :func:`training.phantoms.generate` from its own seed range (``ROBUST_SEED0 +
k * 100000``, ``k`` the subset's position in :data:`SUBSETS`), disjoint from the training (0-23999),
validation (5000000-5200299) and main held-out (10000000-) seeds. The pattern mix is the default
one unless the subset fixes it, and the matrix is 128x128 unless the subset says otherwise.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import onnxruntime as ort

from training import evaluate as ev
from training.phantoms import Phantom, generate

log = logging.getLogger(__name__)
ROBUST_SEED0 = 11_000_000
SEED_STRIDE = 100_000
# name -> (description, generate() keyword arguments)
SUBSETS: dict[str, tuple[str, dict]] = {
    "markers": ("both skin markers (chin, suprasternal notch) forced on, moved into the field", {"markers": True}),
    "salivary": ("salivary and swallowed-saliva uptake x2.5 (thyroid/salivary down to about 0.4)",
                 {"salivary_scale": 2.5}),
    "matrix256": ("256x256 matrix (resampled to 128x128 by block averaging)", {"matrix": 256}),
    "i123": ("I-123-like: 60-150 k counts, background x1.5-2.5, salivary x1-1.6, penetration halo",
             {"isotope": "i123"}),
    "toxic_adenoma": ("toxic adenoma: one hot nodule, rest of the gland suppressed to 0-20 %",
                      {"pattern": "toxic_adenoma"}),
}
# The bars of the issue: (key in a result row, comparison, bound, label).
BARS = (("dice", ">=", 0.93, "Dice >= 0.93"), ("dice_thyroiditis", ">=", 0.85, "thyroiditis Dice >= 0.85"),
        ("sens_ge10", ">=", 0.95, ">=10 mm sensitivity >= 0.95"), ("sens_8_10", ">=", 0.80, "8-10 mm sensitivity >= 0.80"),
        ("fp_per_image", "<=", 0.5, "FP/image <= 0.5"), ("share_median", "<=", 3.0, "share error median <= 3 pp"),
        ("hot_as_cold", "<=", 0, "no hot nodule reported as cold"))


def subset_seeds(name: str, n: int) -> range:
    """Seeds of subset ``name`` (first ``n``)."""
    start = ROBUST_SEED0 + list(SUBSETS).index(name) * SEED_STRIDE
    return range(start, start + n)


def subset_phantoms(name: str, n: int) -> list[Phantom]:
    """The ``n`` phantoms of subset ``name``."""
    return [generate(s, **SUBSETS[name][1]) for s in subset_seeds(name, n)]


def i123_threshold(rules_path: Path = Path("rules/default.json")) -> float | None:
    """``nodule_probability`` of the default rules' ``i123`` variant (None if absent)."""
    try:
        rules = json.loads(rules_path.read_text())["rules"]
    except (OSError, KeyError, ValueError):
        log.warning("cannot read %s: no I-123 threshold row", rules_path)
        return None
    for rule in rules:
        if rule.get("variant") == "i123" and "nodule_probability" in rule.get("options", {}):
            return float(rule["options"]["nodule_probability"])
    return None


def result_row(label: str, seg_m: dict, nod_m: dict) -> dict:
    """Flat row of the robustness table (None where a subset has no case of that kind)."""
    by = nod_m["sensitivity_by_size"]
    n_by = nod_m["n_cold_by_size"]
    row = {"subset": label, "n": seg_m["n_images"], "dice": seg_m["dice_mean"],
           "dice_thyroiditis": seg_m["dice_per_pattern"].get("thyroiditis"),
           "n_thyroiditis": seg_m["n_per_pattern"].get("thyroiditis", 0),
           "share_median": seg_m["share_error_pp"]["median"], "share_p90": seg_m["share_error_pp"]["p90"],
           "sens_ge10": nod_m["sensitivity_ge10mm"] if nod_m["n_cold_ge10mm"] else None,
           "n_ge10": nod_m["n_cold_ge10mm"], "img_miss_ge10": nod_m["images_missing_ge10mm"],
           "sens_8_10": by["8-10mm"], "n_8_10": n_by["8-10mm"],
           "fp_per_image": nod_m["fp_per_image"], "hot": nod_m["hot_nodules"],
           "hot_as_cold": nod_m["hot_detected_as_cold"], "probability": nod_m["probability"]}
    row["misses"] = bar_misses(row)
    return row


def bar_misses(row: dict) -> list[str]:
    """Labels of the bars a row misses (a bar without cases in the subset is not judged)."""
    out = []
    for key, op, bound, label in BARS:
        v = row.get(key)
        if v is not None and not (v >= bound if op == ">=" else v <= bound):
            out.append(label)
    return out


def evaluate_subsets(seg: ort.InferenceSession, nod: ort.InferenceSession, thresholds: dict, n: int,
                     i123_probability: float | None = None) -> list[dict]:
    """One :func:`result_row` per subset at the model's thresholds (plus I-123 at its rule's threshold).

    Parameters
    ----------
    seg, nod : ort.InferenceSession
        Segmentation and cold-nodule sessions.
    thresholds : dict
        The nodule model's ``thresholds`` (``probability``, ``min_area_px``).
    n : int
        Images per subset.
    i123_probability : float or None
        Extra row for the ``i123`` subset at this probability (the ``i123`` rule's override).

    Returns
    -------
    list of dict
        Rows with ``name``, ``description``, ``seeds`` and the metrics of :func:`result_row`.
    """
    rows = []
    for name, (desc, _) in SUBSETS.items():
        seeds = subset_seeds(name, n)
        phs = subset_phantoms(name, n)
        preds = ev.predict(seg, nod, phs)
        seg_m = ev.summarise_segmentation(ev.segmentation_rows(phs, preds))
        cache = ev.nodule_cache(seg, nod, phs, preds)
        probs = [thresholds["probability"]]
        if name == "i123" and i123_probability is not None and i123_probability != thresholds["probability"]:
            probs.append(i123_probability)
        for p in probs:
            nod_m = ev.nodule_metrics(cache, p, thresholds["min_area_px"])
            label = name if p == thresholds["probability"] else f"{name} @ rule threshold {p}"
            rows.append(result_row(label, seg_m, nod_m) | {"name": name, "description": desc,
                                                          "seeds": f"{seeds.start}-{seeds.stop - 1}"})
        log.info("robustness subset %s: Dice %.3f, misses %s", name, seg_m["dice_mean"], rows[-1]["misses"])
    return rows
