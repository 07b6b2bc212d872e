"""Held-out evaluation of the shipped ONNX files: ``python -m training.evaluate``.

Uses onnxruntime and the plugin's pre/post-processing, so the figures are those of the files:
segmentation = argmax of the logits (softmax argmax) resampled back to the frame with nearest;
nodules = sigmoid > ``probability`` on the 128x128 input grid, 8-connected components inside the
predicted gland dilated by 2 px (input grid), components of at least ``min_area_px`` input-grid
pixels. **Hit criterion**: a detection's centroid (mapped back to frame pixels) lies within the true
cold nodule's radius + 2 frame pixels; each true nodule is counted once; a detection hitting no
true cold nodule is a false positive (and a hot-nodule false positive if it hits a hot one).
Phantoms come from :func:`training.phantoms.generate` with its default pattern mix, seeds from
:data:`training.data.EVAL_SEED0` (never used in training or validation).

``main`` writes ``training/REPORT.md`` and ``training/report/`` (FROC curve, reliability diagram,
failure and phantom galleries, ``metrics.json``): Dice per pattern and lobe, right/left count-share
error (:mod:`training.metrics`), lesion sensitivity by size band, FP/image and FROC, calibration
(ECE) of the candidates' confidence, the robustness subsets of :mod:`training.robustness` and the
CPU latency of both files.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections import deque
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.data import EVAL_SEED0, preprocess, resample_labels
from training.metrics import BAND_NAMES, SIZE_BANDS, candidate_hits, share_error_pp, summarise_errors, within
from training.phantoms import PATTERNS, Phantom, generate

log = logging.getLogger(__name__)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    s = int(a.sum() + b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a ``(2r+1)`` square (``radius`` steps of 8-neighbourhood)."""
    out = mask.astype(bool)
    for _ in range(radius):
        p = np.pad(out, 1)
        out = np.max([p[1 + dr:p.shape[0] - 1 + dr, 1 + dc:p.shape[1] - 1 + dc]
                      for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
    return out


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected component labels (0 background, 1..n) and their number ``n``."""
    lab = np.zeros(mask.shape, np.int32)
    n = 0
    for r0, c0 in zip(*np.nonzero(mask)):
        if lab[r0, c0]:
            continue
        n += 1
        lab[r0, c0] = n
        queue = deque([(r0, c0)])
        while queue:
            r, c = queue.popleft()
            for rr in range(max(r - 1, 0), min(r + 2, mask.shape[0])):
                for cc in range(max(c - 1, 0), min(c + 2, mask.shape[1])):
                    if mask[rr, cc] and not lab[rr, cc]:
                        lab[rr, cc] = n
                        queue.append((rr, cc))
    return lab, n


def detect(prob: np.ndarray, gland: np.ndarray, probability: float, min_area_px: int,
           frame_shape: tuple[int, int]) -> list[tuple[float, float, float]]:
    """Candidates ``(row, col, peak)`` in frame pixels from an input-grid probability map."""
    lab, n = connected_components((prob > probability) & dilate(gland, 2))
    out = []
    sr, sc = frame_shape[0] / prob.shape[0], frame_shape[1] / prob.shape[1]
    for k in range(1, n + 1):
        rr, cc = np.nonzero(lab == k)
        if len(rr) >= min_area_px:
            out.append(((rr.mean() + 0.5) * sr - 0.5, (cc.mean() + 0.5) * sc - 0.5, float(prob[rr, cc].max())))
    return out


def match(dets: list[tuple[float, float, float]], ph: Phantom, margin_px: float = 2.0) -> tuple[list[bool], int, int]:
    """Hit flag per true cold nodule, false positives, and false positives lying on hot nodules."""
    cold = [n for n in ph.nodules if n.kind == "cold"]
    hot = [n for n in ph.nodules if n.kind == "hot"]
    hits, fp, fp_hot = [False] * len(cold), 0, 0
    for d in dets:
        matched = [i for i, n in enumerate(cold) if within(d, n, ph.mm_per_px, margin_px)]
        for i in matched:
            hits[i] = True
        if not matched:
            fp += 1
            fp_hot += any(within(d, n, ph.mm_per_px, margin_px) for n in hot)
    return hits, fp, fp_hot


def session(path: Path) -> ort.InferenceSession:
    """CPU onnxruntime session on two threads."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def declared_normalisation(sess: ort.InferenceSession) -> dict | None:
    """The ``normalisation`` a session's file declares (None: the 1.0.0 default), as the plugin applies it."""
    text = sess.get_modelmeta().custom_metadata_map.get("normalisation")
    return json.loads(text) if text else None


def infer(seg: ort.InferenceSession, nod: ort.InferenceSession | None,
          frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Frame-size lobe labels, input-grid gland mask and input-grid nodule probability.

    Each model gets the frame normalised as its own file declares (``normalisation`` key).
    """
    x = preprocess(frame, declared_normalisation(seg))
    lab = seg.run(None, {seg.get_inputs()[0].name: x})[0][0].argmax(0).astype(np.uint8)
    prob = None
    if nod is not None:
        xn = preprocess(frame, declared_normalisation(nod))
        logits = nod.run(None, {nod.get_inputs()[0].name: xn})[0][0, 0]
        prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return resample_labels(lab, frame.shape), lab > 0, prob


def phantoms(seeds: range) -> list[Phantom]:
    """Held-out phantoms: default mix, 1 in 10 at 256x256."""
    return [generate(s, matrix=256 if s % 10 == 0 else 128) for s in seeds]


def predict(seg: ort.InferenceSession, nod: ort.InferenceSession | None, phs: list[Phantom]) -> list[tuple]:
    """:func:`infer` for each phantom: (frame labels, input-grid gland, nodule probability or None)."""
    return [infer(seg, nod, ph.image) for ph in phs]


def segmentation_rows(phs: list[Phantom], preds: list[tuple]) -> list[tuple[str, float, float, float, float]]:
    """Per image: pattern, gland Dice, image-left and image-right lobe Dice, count-share error (pp)."""
    return [(ph.pattern, dice(pr[0] > 0, ph.lobe_mask > 0), dice(pr[0] == 1, ph.lobe_mask == 1),
             dice(pr[0] == 2, ph.lobe_mask == 2), share_error_pp(ph.image, ph.lobe_mask, pr[0]))
            for ph, pr in zip(phs, preds)]


def summarise_segmentation(rows: list[tuple[str, float, float, float, float]]) -> dict:
    """Mean Dice overall, per pattern and per lobe; share error (median, p90) overall and per pattern."""
    present = [p for p in PATTERNS if any(r[0] == p for r in rows)]
    return {"dice_mean": float(np.mean([r[1] for r in rows])),
            "dice_lobe_image_left": float(np.mean([r[2] for r in rows])),
            "dice_lobe_image_right": float(np.mean([r[3] for r in rows])),
            "dice_per_pattern": {p: float(np.mean([r[1] for r in rows if r[0] == p])) for p in present},
            "n_per_pattern": {p: sum(r[0] == p for r in rows) for p in PATTERNS}, "n_images": len(rows),
            "share_error_pp": summarise_errors([r[4] for r in rows]),
            "share_error_pp_per_pattern": {p: summarise_errors([r[4] for r in rows if r[0] == p]) for p in present}}


def segmentation_metrics(seg: ort.InferenceSession, phs: list[Phantom]) -> dict:
    """Mean thyroid Dice overall, per pattern and per lobe, and the right/left share error."""
    return summarise_segmentation(segmentation_rows(phs, predict(seg, None, phs)))


def nodule_cache(seg: ort.InferenceSession, nod: ort.InferenceSession, phs: list[Phantom],
                 preds: list[tuple] | None = None) -> list[tuple]:
    """(phantom, gland, probability) per image, so thresholds can be swept cheaply.

    ``preds`` (from :func:`predict` with the nodule model) avoids running the networks again.
    """
    return [(ph, *pr[1:]) for ph, pr in zip(phs, preds or predict(seg, nod, phs))]


def candidates(cache: list[tuple], probability: float, min_area_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (peak probability) and true-hit flag of every candidate, for calibration."""
    conf, hit = [], []
    for ph, gland, prob in cache:
        dets = detect(prob, gland, probability, min_area_px, ph.image.shape)
        conf += [d[2] for d in dets]
        hit += candidate_hits(dets, ph)
    return np.asarray(conf, float), np.asarray(hit, bool)


def nodule_metrics(cache: list[tuple], probability: float, min_area_px: int) -> dict:
    """Lesion-level sensitivity by size band, FP per image, hot nodules detected as cold."""
    per_band = {b: [0, 0] for b in BAND_NAMES}
    fp = fp_hot = n_hot = img_miss10 = 0
    for ph, gland, prob in cache:
        hits, f, fh = match(detect(prob, gland, probability, min_area_px, ph.image.shape), ph)
        fp, fp_hot = fp + f, fp_hot + fh
        n_hot += sum(n.kind == "hot" for n in ph.nodules)
        cold = [n for n in ph.nodules if n.kind == "cold"]
        img_miss10 += any(not h and n.diameter_mm >= 10 for n, h in zip(cold, hits))
        for n, h in zip(cold, hits):
            for name, (lo, hi) in zip(BAND_NAMES, SIZE_BANDS):
                if lo <= n.diameter_mm < hi:
                    per_band[name][0] += h
                    per_band[name][1] += 1
    ge10 = [per_band[b] for b in ("10-20mm", ">=20mm")]
    hit10, n10 = sum(h for h, _ in ge10), sum(n for _, n in ge10)
    return {"sensitivity_ge10mm": hit10 / max(n10, 1), "n_cold_ge10mm": n10,
            "sensitivity_all": sum(h for h, _ in per_band.values()) / max(sum(n for _, n in per_band.values()), 1),
            "sensitivity_by_size": {b: (h / n if n else None) for b, (h, n) in per_band.items()},
            "n_cold_by_size": {b: n for b, (_, n) in per_band.items()},
            "fp_per_image": fp / len(cache), "hot_nodules": n_hot, "hot_detected_as_cold": fp_hot,
            "n_images": len(cache), "images_missing_ge10mm": img_miss10, "probability": probability,
            "min_area_px": min_area_px}


def select_thresholds(cache: list[tuple], max_fp_per_image: float = 0.5) -> dict:
    """Most sensitive (all cold nodules) ``probability``/``min_area_px`` within an FP budget."""
    best, key = None, None
    for p in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        for a in (1, 2, 3, 4, 6, 8):
            m = nodule_metrics(cache, p, a)
            k = (m["fp_per_image"] <= max_fp_per_image, m["sensitivity_all"], m["sensitivity_ge10mm"],
                 -m["fp_per_image"])
            if key is None or k > key:
                best, key = {"probability": p, "min_area_px": a}, k
    return best




FROC_PROBABILITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def _cpu() -> str:
    """Short description of this machine's CPU for the timing table."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    name = names[0] if names else platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} logical CPUs visible (shared with other work while measured)"


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: evaluate the highest-version files in ``--models-dir``, write report and figures."""
    from training import galleries, report_md, report_plots, robustness
    from training.export import latest_model  # local imports: export imports this module
    from training.metrics import onnx_latency_ms, reliability
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--n", type=int, default=500, help="number of held-out phantoms")
    ap.add_argument("--n-robust", type=int, default=100, help="phantoms per robustness subset")
    ap.add_argument("--report", type=Path, default=Path("training/REPORT.md"))
    ap.add_argument("--figures", type=Path, default=Path("training/report"), help="folder of the PNGs")
    ap.add_argument("--previous", type=Path, help="metrics.json of earlier files, for a comparison table")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    paths = (latest_model(args.models_dir, "thyroid-segmentation"), latest_model(args.models_dir, "cold-nodule-detection"))
    seg, nod = session(paths[0]), session(paths[1])
    metas = [s.get_modelmeta().custom_metadata_map for s in (seg, nod)]
    thr = json.loads(metas[1]["thresholds"])
    seeds = range(EVAL_SEED0, EVAL_SEED0 + args.n)
    phs = phantoms(seeds)
    preds = predict(seg, nod, phs)
    rows = segmentation_rows(phs, preds)
    cache = nodule_cache(seg, nod, phs, preds)
    conf, hit = candidates(cache, thr["probability"], thr["min_area_px"])
    bins, ece = reliability(conf, hit)
    log.info("held-out set done in %.0f s; robustness subsets next", time.time() - t0)
    res = {"names": [p.name for p in paths], "trained": [m["training_data"] for m in metas],
           "segmentation": summarise_segmentation(rows),
           "nodules": nodule_metrics(cache, thr["probability"], thr["min_area_px"]),
           "froc": [nodule_metrics(cache, p, thr["min_area_px"]) for p in FROC_PROBABILITIES],
           "calibration": {"bins": bins, "ece": ece, "n": int(conf.size)},
           "robustness": robustness.evaluate_subsets(seg, nod, thr, args.n_robust, robustness.i123_threshold()),
           "n_robust": args.n_robust, "gallery_seed0": galleries.GALLERY_SEED0, "cpu": _cpu(),
           "timing": {p.name: {"1_thread_ms": onnx_latency_ms(p, 1), "default_threads_ms": onnx_latency_ms(p, 0)}
                      for p in paths}}
    for name, t in res["timing"].items():
        print(f"{name}: {t['1_thread_ms']:.1f} ms (1 thread), {t['default_threads_ms']:.1f} ms (default threads)")
    args.figures.mkdir(parents=True, exist_ok=True)
    figs = {"froc": report_plots.froc_plot(args.figures / "froc.png", res["froc"], res["nodules"],
                                           f"FROC of {paths[1].name}, {args.n} held-out phantoms"),
            "calibration": report_plots.reliability_plot(args.figures / "calibration.png", bins, ece, int(conf.size),
                                                         f"Reliability of {paths[1].name} candidates"),
            "failures": report_plots.gallery(args.figures / "failures.png",
                                             galleries.failure_tiles(phs, seeds, preds, rows, thr), 4, 224,
                                             "Worst held-out cases", galleries.TRUTH_LEGEND),
            "phantoms": report_plots.gallery(args.figures / "phantoms.png", galleries.phantom_tiles(), 4, 224,
                                             "Synthetic phantoms (training/phantoms.py), no overlays")}
    sel = args.figures / "i123_threshold.json"
    if sel.exists():
        res["i123_threshold"] = json.loads(sel.read_text())
    if args.previous and args.previous.exists():
        res["previous"] = json.loads(args.previous.read_text())
    res["figures"] = {k: os.path.relpath(v, args.report.parent) for k, v in figs.items()}
    res["elapsed_s"] = time.time() - t0
    (args.figures / "metrics.json").write_text(json.dumps(res, indent=1, default=float))
    text = report_md.report_markdown(res)
    args.report.write_text(text)
    print(text)
    print(f"evaluation written in {res['elapsed_s']:.0f} s: {args.report}, {args.figures}/", flush=True)


if __name__ == "__main__":
    main()
