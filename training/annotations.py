"""Turn a physician's annotation of one NM thyroid frame into a label mask.

Every converter returns a :class:`Converted` whose ``mask`` is uint8, the frame's shape, with
:data:`LABELS`: 0 background, 1 thyroid (every lobe, isthmus or gland region), 2 cold nodule
(drawn over the thyroid). A converter raises :class:`ConversionError` with the reason when
nothing usable comes out; regions it leaves out are listed in ``notes``.

Which region is which comes from its name (SEG: segment label and property type, also by SCT
code; RTSTRUCT: ROIName; ImageJ: ROI name, else file name), see :func:`label_for_name`.

Geometry: polygons use image coordinates in pixels with (0, 0) at the top-left corner of the
top-left pixel (as ImageJ and DICOM SCOORD); a pixel belongs to a polygon when its centre is
inside (even-odd rule). RTSTRUCT ContourData (mm) is mapped with the image's
ImagePositionPatient/ImageOrientationPatient when both are present; planar NM has neither, and
then x runs along the columns and y down the rows from the top-left pixel corner:
``column = x / PixelSpacing[1]``, ``row = y / PixelSpacing[0]``; without PixelSpacing the
contour is read in pixels. Contours of one ROI combine by XOR (inner contours are holes); ROIs,
ImageJ ROIs and PNG files of one label combine by union.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from training.imagej_roi import AREA_TYPES, ImageJRoi

logger = logging.getLogger(__name__)

LABELS = {0: "background", 1: "thyroid", 2: "cold nodule"}
THYROID_CODES = {"69748006", "40867004"}  # SCT thyroid, thyroid isthmus
NODULE_CODES = {"27925004", "237495005"}  # SCT nodule, thyroid nodule
_HOT = re.compile(r"\bhot\b|\bwarm|chaud|hei(ß|ss)|calien|autonom", re.IGNORECASE)
_NODULE = re.compile(r"nodul|n[óo]dulo|knoten|\bcold|\bkalt|froid|\bfr[ií]o", re.IGNORECASE)
_THYROID = re.compile(r"thyr|schild|tiro|tireo|lobe|lappen|l[óo]bulo|isthm|gland", re.IGNORECASE)


class ConversionError(ValueError):
    """An annotation that cannot become a mask; the message says why."""


@dataclass(frozen=True, eq=False)
class Converted:
    """A label mask (see :data:`LABELS`) and notes on what was left out."""

    mask: np.ndarray
    notes: tuple[str, ...] = ()


def label_for_name(text: str) -> tuple[int | None, str]:
    """Return (label, reason) for a region name: 2 cold nodule, 1 thyroid, None neither.

    Examples
    --------
    >>> label_for_name("Nodule froid 1")[0], label_for_name("Thyroid left lobe")[0]
    (2, 1)
    >>> label_for_name("Hot nodule")
    (None, 'a hot nodule is not a cold-nodule label')
    """
    if _HOT.search(text):
        return None, "a hot nodule is not a cold-nodule label"
    if _NODULE.search(text):
        return 2, "nodule"
    if _THYROID.search(text):
        return 1, "thyroid"
    return None, "the name says neither thyroid nor nodule"


def fill_polygon(xs: Sequence[float], ys: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a closed polygon: pixels whose centre is inside (even-odd), clipped to ``shape``.

    Examples
    --------
    >>> int(fill_polygon([1, 4, 4, 1], [1, 1, 3, 3], (5, 5)).sum())
    6
    """
    x0, y0 = np.asarray(xs, float), np.asarray(ys, float)
    mask = np.zeros(shape, bool)
    if x0.size < 3:
        return mask
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    centres_y = np.arange(shape[0]) + 0.5
    centres_x = np.arange(shape[1]) + 0.5
    crosses = ((centres_y[:, None] >= np.minimum(y0, y1)) & (centres_y[:, None] < np.maximum(y0, y1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        at_x = x0 + (centres_y[:, None] - y0) / (y1 - y0) * (x1 - x0)
    for row in np.nonzero(crosses.any(axis=1))[0]:
        xs_row = np.sort(at_x[row, crosses[row]])
        mask[row] = np.searchsorted(xs_row, centres_x, side="right") % 2 == 1
    return mask


def fill_ellipse(left: float, top: float, width: float, height: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside the ellipse inscribed in a box (ImageJ's oval)."""
    if width <= 0 or height <= 0:
        return np.zeros(shape, bool)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    u = (cols + 0.5 - left - width / 2) / (width / 2)
    v = (rows + 0.5 - top - height / 2) / (height / 2)
    return u**2 + v**2 < 1


def _combine(gland: np.ndarray, nodule: np.ndarray, notes: list[str]) -> Converted:
    """Build the label mask; refuse a mask without any thyroid."""
    if not gland.any():
        found = "only cold-nodule regions" if nodule.any() else "no thyroid or cold-nodule region"
        raise ConversionError(f"{found} on this image" + (f" ({'; '.join(notes)})" if notes else ""))
    outside = int((nodule & ~gland).sum())
    if outside:
        notes.append(f"{outside} cold-nodule pixel(s) lie outside the thyroid outline")
    mask = gland.astype(np.uint8)
    mask[nodule] = 2
    return Converted(mask, tuple(notes))


def seg_to_mask(seg: Dataset, image: Dataset, *, frame_number: int = 1) -> Converted:
    """Convert the segments of a DICOM SEG that cover frame ``frame_number`` of ``image``.

    Segments made by an algorithm (SegmentAlgorithmType AUTOMATIC, e.g. this node's own
    results) are left out: they are not a physician's annotation.

    Raises
    ------
    ConversionError
        If highdicom cannot read the SEG, its size differs from the image, it has no pixels for
        that frame, or no thyroid segment remains.
    """
    import highdicom as hd

    shape = (int(image.Rows), int(image.Columns))
    try:
        parsed = hd.seg.Segmentation.from_dataset(seg, copy=True)
    except Exception as error:  # highdicom raises several classes for malformed input
        raise ConversionError(f"not a readable DICOM SEG: {error}") from error
    if (int(seg.Rows), int(seg.Columns)) != shape:
        raise ConversionError(f"mask size mismatch: SEG {seg.Rows}x{seg.Columns}, image {shape[0]}x{shape[1]}")
    notes: list[str] = []
    wanted: dict[int, int] = {}
    for item in seg.SegmentSequence:
        number, label_text = int(item.SegmentNumber), str(item.get("SegmentLabel", ""))
        codes = [item.SegmentedPropertyTypeCodeSequence[0]] if "SegmentedPropertyTypeCodeSequence" in item else []
        text = " ".join([label_text, *(str(c.get("CodeMeaning", "")) for c in codes)])
        values = {str(c.get("CodeValue", "")) for c in codes}
        label, why = label_for_name(text)
        if label != 2 and values & NODULE_CODES and not _HOT.search(text):
            label = 2
        elif label is None and values & THYROID_CODES:
            label = 1
        if str(item.get("SegmentAlgorithmType", "")).upper() == "AUTOMATIC":
            notes.append(f"segment {number} '{label_text}' skipped: made by an algorithm (AUTOMATIC)")
        elif label is None:
            notes.append(f"segment {number} '{label_text}' skipped: {why}")
        else:
            wanted[number] = label
    gland, nodule = np.zeros(shape, bool), np.zeros(shape, bool)
    if wanted:
        numbers = sorted(wanted)
        pixels = _seg_pixels(parsed, image, frame_number, numbers)
        for index, number in enumerate(numbers):
            region = np.asarray(pixels[0, :, :, index]) >= 0.5
            (nodule if wanted[number] == 2 else gland)[region] = True
    return _combine(gland, nodule, notes)


def _seg_pixels(parsed, image: Dataset, frame_number: int, numbers: list[int]) -> np.ndarray:
    """Segment pixels (1, rows, columns, segments) for the frame, by frame or, single-frame, by instance."""
    uid = image.SOPInstanceUID
    try:  # highdicom raises KeyError/ValueError/RuntimeError for missing references
        if "NumberOfFrames" in image:
            try:
                return parsed.get_pixels_by_source_frame(uid, [frame_number], segment_numbers=numbers)
            except Exception:
                if int(image.NumberOfFrames or 1) != 1 or frame_number != 1:
                    raise  # a one-frame image may be referenced without frame numbers
        return parsed.get_pixels_by_source_instance([uid], segment_numbers=numbers)
    except Exception as error:
        raise ConversionError(f"SEG has no pixels for frame {frame_number} of this image: {error}") from error


def _contour_mapper(image: Dataset, notes: list[str]):
    """Return a function mapping (N, 3) ContourData in mm to image (column, row) coordinates."""
    spacing = image.get("PixelSpacing")
    try:
        row_mm, col_mm = float(spacing[0]), float(spacing[1])
        if row_mm <= 0 or col_mm <= 0:
            raise ValueError
    except (TypeError, ValueError, IndexError):
        notes.append("image has no usable PixelSpacing: ContourData read in pixels")
        row_mm = col_mm = 1.0
    position, orientation = image.get("ImagePositionPatient"), image.get("ImageOrientationPatient")
    if position is not None and orientation is not None and len(position) == 3 and len(orientation) == 6:
        origin, cosines = np.asarray(position, float), np.asarray(orientation, float)

        def by_geometry(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d = points - origin  # ImagePositionPatient is the centre of the first pixel
            return d @ cosines[:3] / col_mm + 0.5, d @ cosines[3:] / row_mm + 0.5
        return by_geometry
    return lambda points: (points[:, 0] / col_mm, points[:, 1] / row_mm)


def rtstruct_to_mask(rtstruct: Dataset, image: Dataset, *, frame_number: int = 1) -> Converted:
    """Rasterise the closed contours of an RT Structure Set drawn on ``image`` (see module doc).

    Contours whose ContourImageSequence names another instance or frame are left out; contours
    without ContourImageSequence count as drawn on ``image``.

    Raises
    ------
    ConversionError
        If no thyroid contour lies on this frame.
    """
    shape = (int(image.Rows), int(image.Columns))
    notes: list[str] = []
    names = {int(i.ROINumber): str(i.get("ROIName", "")) for i in rtstruct.get("StructureSetROISequence", [])}
    to_pixels = _contour_mapper(image, notes)
    gland, nodule = np.zeros(shape, bool), np.zeros(shape, bool)
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number, "")
        label, why = label_for_name(name)
        if label is None:
            notes.append(f"ROI {number} '{name}' skipped: {why}")
            continue
        region, elsewhere, malformed, unsupported = np.zeros(shape, bool), 0, 0, set()
        for contour in roi.get("ContourSequence", []):
            refs = list(contour.get("ContourImageSequence", []))
            if refs and not any(r.get("ReferencedSOPInstanceUID") == image.SOPInstanceUID
                                and int(r.get("ReferencedFrameNumber", frame_number) or frame_number) == frame_number
                                for r in refs):
                elsewhere += 1
                continue
            kind = str(contour.get("ContourGeometricType", ""))
            if kind not in ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR"):
                unsupported.add(kind or "missing")
                continue
            values = np.asarray(contour.get("ContourData") or [], float)
            if values.size < 9 or values.size % 3:
                malformed += 1
                continue
            region ^= fill_polygon(*to_pixels(values.reshape(-1, 3)), shape)
        if elsewhere:
            notes.append(f"ROI {number} '{name}': {elsewhere} contour(s) drawn on another image or frame")
        if malformed:
            notes.append(f"ROI {number} '{name}': {malformed} contour(s) with malformed ContourData")
        if unsupported:
            notes.append(f"ROI {number} '{name}': unsupported contour type(s) {sorted(unsupported)}")
        (nodule if label == 2 else gland)[region] = True
    return _combine(gland, nodule, notes)


def imagej_rois_to_mask(rois: Sequence[tuple[str, ImageJRoi]], shape: tuple[int, int], *,
                        frame_number: int = 1) -> Converted:
    """Rasterise ImageJ ROIs given as (file or entry name, ROI) pairs.

    The label comes from the ROI's name, or its file name when unnamed. Polygon, freehand and
    traced ROIs are polygons; rect (rounded corners ignored) and oval use their bounding box. A
    ROI drawn on another stack slice than ``frame_number`` is left out.

    Raises
    ------
    ConversionError
        If no thyroid ROI remains.
    """
    notes: list[str] = []
    gland, nodule = np.zeros(shape, bool), np.zeros(shape, bool)
    for file_name, roi in rois:
        name = roi.name or file_name
        label, why = label_for_name(name)
        if roi.kind not in AREA_TYPES or roi.composite:
            kind = "composite" if roi.composite else roi.kind
            notes.append(f"ROI '{name}' skipped: unsupported ImageJ ROI type {kind!r} (expected {', '.join(AREA_TYPES)})")
        elif roi.position not in (0, frame_number):
            notes.append(f"ROI '{name}' skipped: drawn on slice {roi.position}, the exported frame is {frame_number}")
        elif label is None:
            notes.append(f"ROI '{name}' skipped: {why}")
        else:
            width, height = roi.right - roi.left, roi.bottom - roi.top
            if roi.kind == "oval":
                region = fill_ellipse(roi.left, roi.top, width, height, shape)
            elif roi.kind == "rect":
                region = fill_polygon([roi.left, roi.right, roi.right, roi.left],
                                      [roi.top, roi.top, roi.bottom, roi.bottom], shape)
            else:
                region = fill_polygon(roi.xs, roi.ys, shape)
            if not region.any():
                notes.append(f"ROI '{name}' skipped: it covers no pixel of the {shape[0]}x{shape[1]} image")
            (nodule if label == 2 else gland)[region] = True
    return _combine(gland, nodule, notes)


def _png_pixels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Non-zero pixels of a PNG (palette images by index, colour images by any RGB channel)."""
    try:
        with Image.open(path) as picture:
            array = np.asarray(picture)
            mode = picture.mode
    except OSError as error:
        raise ConversionError(f"{path.name} is not a readable image: {error}") from error
    if array.ndim == 3:
        array = array[..., : 1 if mode == "LA" else 3].any(axis=-1)
    if array.shape != shape:
        raise ConversionError(f"mask size mismatch: {path.name} is {array.shape[0]}x{array.shape[1]} "
                              f"(rows x columns), the image {shape[0]}x{shape[1]}")
    return array != 0


def png_to_mask(gland_pngs: Sequence[Path], nodule_pngs: Sequence[Path], shape: tuple[int, int]) -> Converted:
    """Read PNG masks of the image's size: non-zero is thyroid (or cold nodule, in ``nodule_pngs``).

    Raises
    ------
    ConversionError
        If a file is unreadable or of another size, or the thyroid masks are empty.
    """
    gland, nodule = np.zeros(shape, bool), np.zeros(shape, bool)
    for path in gland_pngs:
        gland |= _png_pixels(Path(path), shape)
    for path in nodule_pngs:
        nodule |= _png_pixels(Path(path), shape)
    return _combine(gland, nodule, [])
