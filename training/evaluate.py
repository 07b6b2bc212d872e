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
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import deque
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.data import EVAL_SEED0, INPUT_SIZE, preprocess, resample_labels
from training.phantoms import PATTERNS, Phantom, generate

log = logging.getLogger(__name__)
NOTES = """## How to read these figures

- Synthetic data only (`training/phantoms.py`, anterior view, no patient data): the figures say the
  networks learned the phantoms, not that they work on real scintigrams.
- Segmentation: argmax of the logits resampled to the frame with nearest, Dice against the true gland
  (lobes + isthmus + pyramidal lobe, isthmus split at the midline). The truth of a thyroiditis or
  toxic-adenoma case is the whole gland, however faint.
- Nodules: candidates are 8-connected components of sigmoid > probability inside the predicted gland
  dilated by 2 px, both on the 128x128 input grid (as in `orthanc_plugin/pipelines/thyroid.py`); a
  candidate hits a true cold nodule when its centroid is within the nodule radius + 2 frame pixels.
  Candidates lying on a hot nodule count as false positives and are listed separately.
- Thresholds were chosen on validation phantoms (default mix, seeds 5100000-5100299): the highest
  sensitivity over all cold nodules with at most 0.5 false positives per image.
- Cold-nodule contrast is drawn from the measured pinhole ranges and applied before the 4-8 mm
  system blur, so nodules under 8 mm are faint; the domain notes say those are usually missed.
- Toxic adenoma: the rest of the gland is suppressed to 0-20 % of the hot nodule.
"""
SIZE_BANDS = ((5.0, 8.0), (8.0, 10.0), (10.0, 20.0), (20.0, 1e9))
BAND_NAMES = ("5-8mm", "8-10mm", "10-20mm", ">=20mm")


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

    def within(d: tuple[float, float, float], n) -> bool:
        return np.hypot(d[0] - n.center_rc[0], d[1] - n.center_rc[1]) <= n.diameter_mm / 2 / ph.mm_per_px + margin_px

    hits, fp, fp_hot = [False] * len(cold), 0, 0
    for d in dets:
        matched = [i for i, n in enumerate(cold) if within(d, n)]
        for i in matched:
            hits[i] = True
        if not matched:
            fp += 1
            fp_hot += any(within(d, n) for n in hot)
    return hits, fp, fp_hot


def session(path: Path) -> ort.InferenceSession:
    """CPU onnxruntime session on two threads."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def infer(seg: ort.InferenceSession, nod: ort.InferenceSession | None,
          frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Frame-size lobe labels, input-grid gland mask and input-grid nodule probability."""
    x = preprocess(frame)
    lab = seg.run(None, {seg.get_inputs()[0].name: x})[0][0].argmax(0).astype(np.uint8)
    prob = None
    if nod is not None:
        logits = nod.run(None, {nod.get_inputs()[0].name: x})[0][0, 0]
        prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return resample_labels(lab, frame.shape), lab > 0, prob


def phantoms(seeds: range) -> list[Phantom]:
    """Held-out phantoms: default mix, 1 in 10 at 256x256."""
    return [generate(s, matrix=256 if s % 10 == 0 else 128) for s in seeds]


def segmentation_metrics(seg: ort.InferenceSession, phs: list[Phantom]) -> dict:
    """Mean thyroid Dice overall, per pattern and per lobe."""
    rows = []
    for ph in phs:
        pred, _, _ = infer(seg, None, ph.image)
        rows.append((ph.pattern, dice(pred > 0, ph.lobe_mask > 0), dice(pred == 1, ph.lobe_mask == 1),
                     dice(pred == 2, ph.lobe_mask == 2)))
    out = {"dice_mean": float(np.mean([r[1] for r in rows])),
           "dice_lobe_image_left": float(np.mean([r[2] for r in rows])),
           "dice_lobe_image_right": float(np.mean([r[3] for r in rows])),
           "dice_per_pattern": {p: float(np.mean([r[1] for r in rows if r[0] == p])) for p in PATTERNS
                                if any(r[0] == p for r in rows)},
           "n_per_pattern": {p: sum(r[0] == p for r in rows) for p in PATTERNS}, "n_images": len(rows)}
    return out


def nodule_cache(seg: ort.InferenceSession, nod: ort.InferenceSession, phs: list[Phantom]) -> list[tuple]:
    """(phantom, gland, probability) per image, so thresholds can be swept cheaply."""
    return [(ph, *infer(seg, nod, ph.image)[1:]) for ph in phs]


def nodule_metrics(cache: list[tuple], probability: float, min_area_px: int) -> dict:
    """Lesion-level sensitivity by size band, FP per image, hot nodules detected as cold."""
    per_band = {b: [0, 0] for b in BAND_NAMES}
    fp = fp_hot = 0
    n_hot = 0
    for ph, gland, prob in cache:
        hits, f, fh = match(detect(prob, gland, probability, min_area_px, ph.image.shape), ph)
        fp, fp_hot = fp + f, fp_hot + fh
        n_hot += sum(n.kind == "hot" for n in ph.nodules)
        for n, h in zip([n for n in ph.nodules if n.kind == "cold"], hits):
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
            "n_images": len(cache), "probability": probability, "min_area_px": min_area_px}


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


def report_markdown(seg_m: dict, nod_m: dict, froc: list[dict], names: tuple[str, str],
                    trained: tuple[str, str]) -> str:
    """``training/REPORT.md`` text (``trained``: the files' ``training_data`` strings)."""
    lines = [f"# Held-out evaluation of `{names[0]}` and `{names[1]}`", "",
             f"- `{names[0]}`: {trained[0]}", f"- `{names[1]}`: {trained[1]}", "",
             f"{seg_m['n_images']} synthetic phantoms, seeds {EVAL_SEED0}-{EVAL_SEED0 + seg_m['n_images'] - 1} "
             "(never used for training, validation or thresholds), default pattern mix, every tenth "
             "at 256x256. Written by `python -m training.evaluate`.", "",
             "## Thyroid segmentation (Dice, frame resolution)", "", "| subset | n | Dice |", "|---|---|---|",
             f"| all | {seg_m['n_images']} | {seg_m['dice_mean']:.3f} |"]
    lines += [f"| {p} | {seg_m['n_per_pattern'][p]} | {d:.3f} |" for p, d in seg_m["dice_per_pattern"].items()]
    lines += [f"| lobe image-left | {seg_m['n_images']} | {seg_m['dice_lobe_image_left']:.3f} |",
              f"| lobe image-right | {seg_m['n_images']} | {seg_m['dice_lobe_image_right']:.3f} |", "",
              f"## Cold-nodule detection (probability > {nod_m['probability']}, "
              f"min area {nod_m['min_area_px']} px of the 128x128 grid)", "",
              "Hit: detection centroid within the true radius + 2 frame px; each nodule counted once.", "",
              "| size band | n | sensitivity |", "|---|---|---|"]
    for b in BAND_NAMES:
        s = nod_m["sensitivity_by_size"][b]
        lines.append(f"| {b} | {nod_m['n_cold_by_size'][b]} | {'-' if s is None else f'{s:.3f}'} |")
    lines += [f"| >=10 mm | {nod_m['n_cold_ge10mm']} | {nod_m['sensitivity_ge10mm']:.3f} |",
              f"| all | {sum(nod_m['n_cold_by_size'].values())} | {nod_m['sensitivity_all']:.3f} |", "",
              f"False positives per image: {nod_m['fp_per_image']:.3f}; hot nodules detected as cold: "
              f"{nod_m['hot_detected_as_cold']} of {nod_m['hot_nodules']}.", "",
              "FROC points (min area as shipped):", "",
              "| probability | sensitivity >=10 mm | all | FP/image |", "|---|---|---|---|"]
    lines += [f"| {f['probability']} | {f['sensitivity_ge10mm']:.3f} | {f['sensitivity_all']:.3f} "
              f"| {f['fp_per_image']:.3f} |" for f in froc]
    return "\n".join(lines + ["", NOTES])


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: evaluate the highest-version files in ``--models-dir``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--n", type=int, default=500, help="number of held-out phantoms")
    ap.add_argument("--report", type=Path, default=Path("training/REPORT.md"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training.export import latest_model  # local import: export imports this module
    seg_path = latest_model(args.models_dir, "thyroid-segmentation")
    nod_path = latest_model(args.models_dir, "cold-nodule-detection")
    seg, nod = session(seg_path), session(nod_path)
    seg_meta, nod_meta = seg.get_modelmeta().custom_metadata_map, nod.get_modelmeta().custom_metadata_map
    thr = json.loads(nod_meta["thresholds"])
    phs = phantoms(range(EVAL_SEED0, EVAL_SEED0 + args.n))
    seg_m = segmentation_metrics(seg, phs)
    cache = nodule_cache(seg, nod, phs)
    nod_m = nodule_metrics(cache, thr["probability"], thr["min_area_px"])
    froc = [nodule_metrics(cache, p, thr["min_area_px"]) for p in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)]
    text = report_markdown(seg_m, nod_m, froc, (seg_path.name, nod_path.name),
                           (seg_meta["training_data"], nod_meta["training_data"]))
    args.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
