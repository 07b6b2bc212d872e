"""Report metrics beyond Dice: right/left count-share error, detector calibration, ONNX latency.

Shared by :mod:`training.evaluate` (held-out set) and :mod:`training.robustness` (subsets).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.data import INPUT_SIZE
from training.phantoms import NoduleTruth, Phantom

log = logging.getLogger(__name__)
SIZE_BANDS = ((5.0, 8.0), (8.0, 10.0), (10.0, 20.0), (20.0, 1e9))
BAND_NAMES = ("5-8mm", "8-10mm", "10-20mm", ">=20mm")
# Share error given to an image where one side has no counts (no gland predicted): the worst case.
SHARE_UNDEFINED_PP = 100.0


def count_share(image: np.ndarray, labels: np.ndarray) -> float:
    """Image-left count share (%) of the gland: counts under label 1 over counts under labels 1 and 2.

    Parameters
    ----------
    image : np.ndarray
        Counts frame.
    labels : np.ndarray
        Frame-size lobe labels (0 background, 1 image-left, 2 image-right).

    Returns
    -------
    float
        Share in percent, NaN when the gland holds no counts.
    """
    left = float(image[labels == 1].sum())
    total = left + float(image[labels == 2].sum())
    return 100.0 * left / total if total > 0 else float("nan")


def share_error_pp(image: np.ndarray, true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Absolute difference (percentage points) of the right/left share, predicted vs true lobes.

    Both shares are measured on the same counts, so only the segmentation differs. The image-right
    share is 100 minus the image-left one, so its error is the same. Returns
    :data:`SHARE_UNDEFINED_PP` when either share is undefined (no counts under the lobes).
    """
    t, p = count_share(image, true_labels), count_share(image, pred_labels)
    return SHARE_UNDEFINED_PP if np.isnan(t) or np.isnan(p) else abs(p - t)


def summarise_errors(errors: Sequence[float]) -> dict:
    """Median, 90th percentile, count and number of undefined (worst-case) share errors."""
    e = np.asarray(errors, float)
    if e.size == 0:
        return {"median": None, "p90": None, "n": 0, "n_undefined": 0}
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "n": int(e.size),
            "n_undefined": int((e >= SHARE_UNDEFINED_PP).sum())}


def within(det: tuple[float, float, float], nodule: NoduleTruth, mm_per_px: float, margin_px: float = 2.0) -> bool:
    """Hit criterion: the detection's centroid lies within the nodule's radius + ``margin_px`` pixels."""
    return bool(np.hypot(det[0] - nodule.center_rc[0], det[1] - nodule.center_rc[1])
                <= nodule.diameter_mm / 2 / mm_per_px + margin_px)


def candidate_hits(dets: Sequence[tuple[float, float, float]], ph: Phantom, margin_px: float = 2.0) -> list[bool]:
    """Per detection: does it hit a true cold nodule (the criterion of :func:`within`)?"""
    cold = [n for n in ph.nodules if n.kind == "cold"]
    return [any(within(d, n, ph.mm_per_px, margin_px) for n in cold) for d in dets]


def reliability(conf: Sequence[float], hit: Sequence[bool], n_bins: int = 10) -> tuple[list[dict], float]:
    """Reliability bins and expected calibration error (ECE) of candidate confidences.

    Parameters
    ----------
    conf : sequence of float
        Confidence of each candidate in [0, 1] (its peak probability).
    hit : sequence of bool
        Whether each candidate is a true hit.
    n_bins : int
        Equal-width bins over [0, 1]; bin ``i`` is ``[i/n, (i+1)/n)``, the last one includes 1.

    Returns
    -------
    tuple
        Non-empty bins as dicts (``lo``, ``hi``, ``n``, ``confidence``: mean confidence,
        ``fraction_hit``) and ``ECE = sum_b n_b / N * |fraction_hit_b - confidence_b|`` (NaN if
        there are no candidates).
    """
    c, h = np.asarray(conf, float), np.asarray(hit, float)
    idx = np.clip(np.digitize(c, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": int(sel.sum()),
                         "confidence": float(c[sel].mean()), "fraction_hit": float(h[sel].mean())})
            ece += sel.sum() / c.size * abs(h[sel].mean() - c[sel].mean())
    return bins, (float(ece) if c.size else float("nan"))


def onnx_latency_ms(path: Path, threads: int, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time (ms) of one ``[1, 1, 128, 128]`` onnxruntime CPU run.

    Parameters
    ----------
    path : Path
        ONNX file.
    threads : int
        ``intra_op_num_threads`` (0: onnxruntime's default, one per physical core).
    runs, warmup : int
        Timed runs (median reported) after ``warmup`` untimed ones.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 1, *INPUT_SIZE), dtype=np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))
