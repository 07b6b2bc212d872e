"""Thyroid scintigraphy pipeline: lobes by one network, cold-nodule candidates by another.

Post-processing runs at the networks' resolution (cheap, whatever the matrix); masks are then
brought back to the source frame, where all counts are measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from pydicom.dataset import Dataset

from ..errors import ConfigError, ModelError
from ..findings import Findings, Lobe, Measurement, Nodule
from ..imaging import dilate, label_components
from ..models import LoadedModel
from ..nm_frames import SourceFrame, select_frame
from ..timing import Stopwatch

SEGMENTATION_TASK = "thyroid-segmentation"
NODULE_TASK = "cold-nodule-detection"
TASKS = (SEGMENTATION_TASK, NODULE_TASK)
OPTIONS = {"nodule_probability": float, "min_nodule_area_px": int}
# Gland dilation (network pixels) inside which nodule candidates are kept, and around which the
# background region starts.
NODULE_MARGIN_PX = 2
BACKGROUND_MARGIN_PX = 6


def run(ds: Dataset, models: Mapping[str, LoadedModel], options: Mapping[str, object], *,
        variant: str = "", calibration_mm_per_pixel: float | None = None,
        stopwatch: Stopwatch | None = None) -> Findings:
    """Interpret one thyroid scintigraphy instance.

    Parameters
    ----------
    ds:
        The source instance (NM, or Secondary Capture from an old gateway), pixels included.
    models:
        {task: model}, a snapshot taken when the study started.
    options:
        Per-rule overrides: ``nodule_probability`` (0-1), ``min_nodule_area_px``.
    variant:
        The rule's variant name, recorded in the findings.
    calibration_mm_per_pixel:
        Patient-plane pixel size from a site calibration; None flags sizes as uncalibrated.

    Raises
    ------
    InputError
        When the image cannot be read (see ``nm_frames.select_frame``).
    ModelError
        When a required model is not served.
    """
    watch = stopwatch or Stopwatch()
    _check_options(options)
    seg_model, nodule_model = (_model(models, task) for task in TASKS)
    with watch.phase("decode"):
        frame = select_frame(ds)
    with watch.phase("inference"):
        gland_probs = seg_model.predict(frame.pixels)
        nodule_probs = nodule_model.predict(frame.pixels)[0]
    with watch.phase("postprocess"):
        return _findings(frame, gland_probs, nodule_probs, seg_model, nodule_model, options,
                         variant=variant, calibration=calibration_mm_per_pixel)


def _check_options(options: Mapping[str, object]) -> None:
    for key, value in options.items():
        kind = OPTIONS.get(key)
        if kind is None:
            raise ConfigError(f"thyroid pipeline: unknown option {key!r}; known: {', '.join(OPTIONS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"thyroid pipeline: option {key!r} expects a number, got {value!r}")
    probability = options.get("nodule_probability")
    if probability is not None and not 0 < float(probability) < 1:  # type: ignore[arg-type]
        raise ConfigError(f"thyroid pipeline: nodule_probability must be in (0, 1), got {probability!r}")


def _model(models: Mapping[str, LoadedModel], task: str) -> LoadedModel:
    if task not in models:
        raise ModelError(f"no model serves task {task!r}; drop a valid ONNX file into the models folder")
    return models[task]


def _findings(frame: SourceFrame, gland_probs: np.ndarray, nodule_probs: np.ndarray,
              seg_model: LoadedModel, nodule_model: LoadedModel, options: Mapping[str, object], *,
              variant: str, calibration: float | None) -> Findings:
    shape = frame.pixels.shape
    spacing = (calibration, calibration) if calibration else frame.pixel_spacing_mm
    warnings = list(frame.warnings)
    labels = np.argmax(gland_probs, axis=0)
    # Network label 1 is the lobe on the image's left: the patient's right on an anterior view.
    sides = {1: "right", 2: "left"} if frame.view == "anterior" else {1: "left", 2: "right"}
    small_lobes = {sides[label]: _largest(labels == label) for label in (1, 2)}
    small_lobes = {side: m for side, m in small_lobes.items() if m.any()}
    for side in ("right", "left"):
        if side not in small_lobes:
            warnings.append(f"{side} lobe not found")
    gland_small = np.zeros(labels.shape, dtype=bool)
    for mask in small_lobes.values():
        gland_small |= mask

    lobes = _lobes(frame.pixels, small_lobes, spacing)
    threshold = float(options.get("nodule_probability", nodule_model.spec.thresholds.get("probability", 0.5)))
    min_area = int(options.get("min_nodule_area_px", nodule_model.spec.thresholds.get("min_area_px", 1)))
    nodules = _nodules(frame.pixels, nodule_probs, gland_small, small_lobes, lobes, spacing,
                       threshold=threshold, min_area=min_area)
    gland = upsample_mask(gland_small, shape)
    measurements = _measurements(frame.pixels, gland, gland_small, lobes)
    return Findings(pipeline="thyroid", variant=variant, frame_number=frame.frame_number,
                    image=frame.pixels, pixel_spacing_mm=spacing, calibrated=calibration is not None,
                    view=frame.view, lobes=tuple(lobes.values()), nodules=tuple(nodules),
                    measurements=tuple(measurements), models=(seg_model.info, nodule_model.info),
                    warnings=tuple(warnings))


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = label_components(mask)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def upsample_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of a boolean mask to ``shape`` over the whole field."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _length_px(mask: np.ndarray, spacing: tuple[float, float] | None) -> tuple[float, float | None]:
    """Extent along the principal axis, in pixels and (if spacing is known) in mm."""
    rows, cols = np.nonzero(mask)
    if rows.size < 2:
        return float(rows.size), None
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    results = []
    for scale in ((1.0, 1.0), spacing):
        if scale is None:
            results.append(None)
            continue
        scaled = points * np.asarray(scale)
        centred = scaled - scaled.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        projection = centred @ axis
        pixel_extent = math.hypot(axis[0] * scale[0], axis[1] * scale[1])
        results.append(float(projection.max() - projection.min() + pixel_extent))
    return results[0], results[1]


def _lobes(pixels: np.ndarray, small_lobes: dict[str, np.ndarray],
           spacing: tuple[float, float] | None) -> dict[str, Lobe]:
    masks = {side: upsample_mask(m, pixels.shape) for side, m in small_lobes.items()}
    counts = {side: float(pixels[m].sum()) for side, m in masks.items()}
    total = sum(counts.values()) or 1.0
    pixel_area = spacing[0] * spacing[1] if spacing else None
    lobes = {}
    for side, mask in masks.items():
        area_px = int(mask.sum())
        length_px, length_mm = _length_px(mask, spacing)
        lobes[side] = Lobe(side=side, mask=mask, counts=counts[side],  # type: ignore[arg-type]
                           count_share_percent=100.0 * counts[side] / total, area_px=area_px,
                           length_px=length_px, area_mm2=area_px * pixel_area if pixel_area else None,
                           length_mm=length_mm)
    return lobes


def _nodules(pixels: np.ndarray, probs: np.ndarray, gland_small: np.ndarray,
             small_lobes: dict[str, np.ndarray], lobes: dict[str, Lobe],
             spacing: tuple[float, float] | None, *, threshold: float, min_area: int) -> list[Nodule]:
    candidates, count = label_components((probs > threshold) & dilate(gland_small, NODULE_MARGIN_PX))
    found = []
    for number in range(1, count + 1):
        small = candidates == number
        if small.sum() < min_area:
            continue
        mask = upsample_mask(small, pixels.shape)
        if not mask.any():
            continue
        side = _nodule_lobe(small, small_lobes)
        rows, cols = np.nonzero(mask)
        diameter_px = 2.0 * math.sqrt(mask.sum() / math.pi)
        host = lobes[side].mask if side in lobes else upsample_mask(gland_small, pixels.shape)
        rest = host & ~mask
        parenchyma = float(pixels[rest].mean()) if rest.any() else float("nan")
        ratio = float(pixels[mask].mean()) / parenchyma if parenchyma > 0 else float("nan")
        found.append(dict(
            lobe=side, pole=_pole(rows.mean(), lobes.get(side)), mask=mask,
            centroid_rc=(float(rows.mean()), float(cols.mean())), diameter_px=diameter_px,
            diameter_mm=diameter_px * math.sqrt(spacing[0] * spacing[1]) if spacing else None,
            nodule_to_parenchyma_ratio=ratio, confidence=float(probs[small].max())))
    found.sort(key=lambda n: -n["confidence"])
    return [Nodule(number=i, **n) for i, n in enumerate(found, start=1)]


def _nodule_lobe(small: np.ndarray, small_lobes: dict[str, np.ndarray]) -> str:
    """The lobe the candidate overlaps most (after a small dilation); none: the isthmus."""
    grown = dilate(small, NODULE_MARGIN_PX)
    overlaps = {side: int((grown & mask).sum()) for side, mask in small_lobes.items()}
    best = max(overlaps, key=overlaps.get, default=None)  # type: ignore[arg-type]
    return best if best is not None and overlaps[best] > 0 else "isthmus"


def _pole(row: float, lobe: Lobe | None) -> str:
    """Upper, middle or lower third of the lobe's cranio-caudal extent (rows grow caudally)."""
    if lobe is None:
        return "lower"  # the isthmus joins the lower thirds of the lobes
    rows = np.nonzero(lobe.mask)[0]
    position = (row - rows.min()) / max(rows.max() - rows.min(), 1)
    return "upper" if position < 1 / 3 else "middle" if position < 2 / 3 else "lower"


def _measurements(pixels: np.ndarray, gland: np.ndarray, gland_small: np.ndarray,
                  lobes: dict[str, Lobe]) -> list[Measurement]:
    found: list[Measurement] = []
    for side, lobe in lobes.items():
        found.append(Measurement(f"{side}_count_share", round(lobe.count_share_percent, 2), "%"))
    background = ~upsample_mask(dilate(gland_small, BACKGROUND_MARGIN_PX), pixels.shape)
    if gland.any() and background.any():
        values = pixels[background]
        # Salivary glands and markers are hot: keep the background below its 95th percentile.
        values = values[values <= np.percentile(values, 95)]
        mean_background = float(values.mean()) if values.size else 0.0
        if mean_background > 0:
            ratio = float(pixels[gland].mean()) / mean_background
            found.append(Measurement("thyroid_to_background_ratio", round(ratio, 2), "{ratio}"))
    for side, lobe in lobes.items():
        if lobe.area_mm2 is not None:
            found.append(Measurement(f"{side}_lobe_area", round(lobe.area_mm2, 1), "mm2"))
        if lobe.length_mm is not None:
            found.append(Measurement(f"{side}_lobe_length", round(lobe.length_mm, 1), "mm"))
    return found
