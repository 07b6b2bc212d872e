"""Read the frame to interpret from an NM (or old-gateway Secondary Capture) instance.

NM files are always multi-frame; for STATIC images frames vary by energy window and detector,
so we pick the anterior photopeak frame from the header. Orientation comes from the header too:
it decides which image side is the patient's right, never the picture.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .errors import InputError

logger = logging.getLogger(__name__)

# Photopeaks of the tracers we expect (keV): a window containing one of them is a photopeak window.
PHOTOPEAKS_KEV = (140.5, 159.0)
MIN_SIDE, MAX_SIDE = 16, 4096


@dataclass(frozen=True)
class SourceFrame:
    """One 2-D frame of counts and the header facts a pipeline needs."""

    pixels: np.ndarray  # float32 (rows, columns)
    frame_number: int  # 1-based
    pixel_spacing_mm: tuple[float, float] | None
    view: str  # "anterior" or "posterior"
    warnings: tuple[str, ...] = ()


def select_frame(ds: Dataset) -> SourceFrame:
    """Return the anterior photopeak frame of ``ds``.

    Raises
    ------
    InputError
        When pixels cannot be decoded, or the frame is empty, too small, too large or not 2-D.
    """
    warnings: list[str] = []
    frames = _frames(ds)
    index, view = _choose(ds, frames.shape[0], warnings)
    pixels = frames[index]
    if not np.all(np.isfinite(pixels)):
        raise InputError("pixel data holds non-finite values")
    if float(pixels.max()) <= 0:
        raise InputError(f"frame {index + 1} has no counts (all pixels are zero)")
    return SourceFrame(pixels=pixels, frame_number=index + 1, pixel_spacing_mm=_spacing(ds, warnings),
                       view=view, warnings=tuple(warnings))


def _frames(ds: Dataset) -> np.ndarray:
    """Decode pixel data into float32 (frames, rows, columns)."""
    if "PixelData" not in ds:
        raise InputError("instance has no pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
    try:
        array = ds.pixel_array
    except Exception as error:  # pydicom raises several classes for undecodable data
        raise InputError(f"cannot decode pixel data (transfer syntax {syntax}): {error}") from error
    array = np.asarray(array)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3:  # an RGB capture from an old gateway: counts are lost, grey levels remain
        array = array.astype(np.float32).mean(axis=-1)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[0] != n_frames:
        raise InputError(f"unexpected pixel array shape {array.shape} for {n_frames} frame(s)")
    rows, cols = array.shape[1:]
    if min(rows, cols) < MIN_SIDE or max(rows, cols) > MAX_SIDE:
        raise InputError(f"matrix {rows}x{cols} is outside {MIN_SIDE}..{MAX_SIDE} pixels")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return array.astype(np.float32) * slope + intercept


def _choose(ds: Dataset, n_frames: int, warnings: list[str]) -> tuple[int, str]:
    """Return (0-based frame index, view) preferring the photopeak window and an anterior detector."""
    windows = _vector(ds, "EnergyWindowVector", n_frames)
    detectors = _vector(ds, "DetectorVector", n_frames)
    peak_windows = _photopeak_windows(ds)
    views = _detector_views(ds)

    def score(i: int) -> tuple[int, int, int]:
        window_ok = int(windows is None or not peak_windows or windows[i] in peak_windows)
        view = views.get(detectors[i]) if detectors is not None else None
        return window_ok, int(view == "anterior"), -i

    index = max(range(n_frames), key=score) if n_frames > 1 else 0
    if n_frames > 1 and windows is None and detectors is None:
        warnings.append(f"{n_frames} frames without energy window or detector vectors: frame 1 read")
    view = views.get(detectors[index]) if detectors is not None else None
    if view is None and len(views) == 1:
        view = next(iter(views.values()))
    if view is None:
        view = _view_from_orientation(ds)
    if view is None:
        warnings.append("view orientation not in header: anterior view assumed for laterality")
        view = "anterior"
    return index, view


def _vector(ds: Dataset, keyword: str, n_frames: int) -> list[int] | None:
    values = ds.get(keyword)
    if values is None:
        return None
    items = list(values) if isinstance(values, (MultiValue, list, tuple)) else [values]
    try:
        numbers = [int(v) for v in items]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n_frames else None


def _photopeak_windows(ds: Dataset) -> set[int]:
    """1-based indices of energy windows that contain a tracer photopeak (or are named so)."""
    found: set[int] = set()
    for number, item in enumerate(ds.get("EnergyWindowInformationSequence", []) or [], start=1):
        name = str(item.get("EnergyWindowName", "")).lower()
        if re.search(r"peak|photo|\bpp\b|main", name):
            found.add(number)
            continue
        if re.search(r"scat|compton|lower|upper", name):
            continue
        for window in item.get("EnergyWindowRangeSequence", []) or []:
            low, high = window.get("EnergyWindowLowerLimit"), window.get("EnergyWindowUpperLimit")
            if low is not None and high is not None and any(
                    float(low) <= peak <= float(high) for peak in PHOTOPEAKS_KEV):
                found.add(number)
    return found


def _detector_views(ds: Dataset) -> dict[int, str]:
    """{1-based detector number: 'anterior' | 'posterior'} from ViewCodeSequence meanings."""
    views: dict[int, str] = {}
    for number, item in enumerate(ds.get("DetectorInformationSequence", []) or [], start=1):
        for code in item.get("ViewCodeSequence", []) or []:
            meaning = str(code.get("CodeMeaning", "")).lower()
            if "anterior" in meaning:
                views[number] = "anterior"
            elif "posterior" in meaning:
                views[number] = "posterior"
    return views


def _view_from_orientation(ds: Dataset) -> str | None:
    """Anterior when image columns run towards the patient's left (image left = patient right)."""
    orientation = ds.get("PatientOrientation")
    if not orientation or len(orientation) < 1:
        return None
    row_direction = str(orientation[0]).upper()
    if row_direction.startswith("L"):
        return "anterior"
    if row_direction.startswith("R"):
        return "posterior"
    return None


def _spacing(ds: Dataset, warnings: list[str]) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing")
    try:
        if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
            return float(spacing[0]), float(spacing[1])
    except (TypeError, ValueError):
        pass
    warnings.append("no usable PixelSpacing: sizes reported in pixels only")
    return None
