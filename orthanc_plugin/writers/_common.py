"""What the three writers share: input checks, series attributes, provenance, codes, outlines.

Everything here is deterministic: dates and times come from the source instance, UIDs from the
output's own UIDs, never from the clock or a random generator, so equal inputs give equal bytes.
"""

from __future__ import annotations

import logging
import re

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from orthanc_plugin import MANUFACTURER, SOFTWARE_VERSION
from orthanc_plugin.errors import WriterError
from orthanc_plugin.findings import MEASUREMENT_NAMES, Findings, Lobe, ModelInfo
from orthanc_plugin.uids import OutputUids

logger = logging.getLogger(__name__)

# Tasks of the models that make each kind of result (see models/README.md).
LOBE_TASK = "thyroid-segmentation"
NODULE_TASK = "cold-nodule-detection"

# Project-defined coding scheme for concepts with no standard code (hot/cold, shares, ratios).
PROJECT_SCHEME = "99ORTHANCAI"
PROJECT_SCHEME_NAME = "Orthanc AI node thyroid concepts"


def project_code(value: str, meaning: str) -> Code:
    """Return a code of the project-defined coding scheme."""
    return Code(value, PROJECT_SCHEME, meaning)


COUNT_SHARE = project_code("COUNTSHARE", "Share of thyroid counts")
THYROID_TO_BACKGROUND = project_code("T2B", "Thyroid-to-background count ratio")
NODULE_TO_PARENCHYMA = project_code("N2P", "Nodule-to-parenchyma count ratio")
DETECTOR_CONFIDENCE = project_code("CONF", "Detector confidence")
NODULE_TYPE = project_code("NODTYPE", "Scintigraphic nodule type")
COLD = project_code("COLD", "Cold")
POLE = project_code("POLE", "Thyroid lobe pole")
POLES = {p: project_code(p.upper(), f"{p.capitalize()} pole") for p in ("upper", "middle", "lower")}
SIZE_CALIBRATION = project_code("SIZECAL", "Size calibration")
CALIBRATED = project_code("CALIBRATED", "Calibrated")
UNCALIBRATED = project_code("UNCALIBRATED", "Uncalibrated (stored pixel spacing)")
AI_MODEL = project_code("AIMODEL", "AI model")

SIDE_CODES = {"right": codes.SCT.Right, "left": codes.SCT.Left}
THYROID = codes.SCT.Thyroid
THYROID_ISTHMUS = Code("40867004", "SCT", "Thyroid isthmus")

# Display colours (sRGB) shared by the overlay and the SEG's recommended display colours.
LOBE_COLOURS = {"right": (0, 170, 255), "left": (255, 150, 0)}
NODULE_COLOUR = (255, 255, 0)

# Measurement.name -> concept name; the lobe side, if any, goes in the finding site.
MEASUREMENT_CODES: dict[str, Code] = {
    "right_count_share": COUNT_SHARE,
    "left_count_share": COUNT_SHARE,
    "thyroid_to_background_ratio": THYROID_TO_BACKGROUND,
    "right_lobe_area": codes.SCT.Area,
    "left_lobe_area": codes.SCT.Area,
    "right_lobe_length": codes.SCT.Length,
    "left_lobe_length": codes.SCT.Length,
}

UNIT_CODES: dict[str, Code] = {
    "%": Code("%", "UCUM", "percent"),
    "mm": Code("mm", "UCUM", "millimeter"),
    "mm2": Code("mm2", "UCUM", "square millimeter"),
    "{ratio}": Code("{ratio}", "UCUM", "ratio"),
    "{pixels}": Code("{pixels}", "UCUM", "Pixels"),
    "1": Code("1", "UCUM", "no units"),
}
_UNIT_ALIASES = {"px": "{pixels}", "pixels": "{pixels}", "px2": "{pixels}", "ratio": "{ratio}"}


def unit_code(unit: str) -> Code:
    """Return the UCUM code of ``unit`` (``px`` counts as ``{pixels}``)."""
    key = _UNIT_ALIASES.get(unit, unit)
    if key not in UNIT_CODES:
        raise WriterError(f"unit {unit!r} has no UCUM code here; "
                          f"expected one of {sorted(UNIT_CODES)}")
    return UNIT_CODES[key]


def is_size_unit(unit: str) -> bool:
    """Return True when ``unit`` is a physical size (mm, mm2), which calibration qualifies."""
    return _UNIT_ALIASES.get(unit, unit) in ("mm", "mm2")


def lobe_values(findings: Findings, lobe: Lobe) -> dict[str, tuple[float, str]]:
    """Return the lobe's count share, area and length as (value, unit).

    The named measurements of ``findings`` win; when one is missing, the Lobe's own fields
    stand in (mm when a spacing is known, else ``{pixels}``).
    """
    fallbacks = {
        "count_share": (lobe.count_share_percent, "%"),
        "lobe_area": ((lobe.area_mm2, "mm2") if lobe.area_mm2 is not None
                      else (lobe.area_px, "{pixels}")),
        "lobe_length": ((lobe.length_mm, "mm") if lobe.length_mm is not None
                        else (lobe.length_px, "{pixels}")),
    }
    values = {}
    for key, fallback in fallbacks.items():
        found = findings.measurement(f"{lobe.side}_{key}")
        value, unit = (found.value, found.unit) if found else fallback
        values[key] = (float(value), unit)
    return values


def coding_schemes() -> list[CodingSchemeIdentificationItem]:
    """Return the identification of the project-defined coding scheme."""
    return [CodingSchemeIdentificationItem(
        designator=PROJECT_SCHEME, name=PROJECT_SCHEME_NAME, responsible_organization=MANUFACTURER,
    )]


def is_multiframe(source: Dataset) -> bool:
    """Return True when ``source`` is a multi-frame instance (NM), False for single-frame (SC)."""
    return "NumberOfFrames" in source and source.SOPClassUID != SecondaryCaptureImageStorage


def check_inputs(source: Dataset, findings: Findings) -> None:
    """Raise WriterError when ``source`` and ``findings`` cannot make a consistent result."""
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                    "Rows", "Columns"):
        if not source.get(keyword):
            raise WriterError(f"source instance has no {keyword}")
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if not 1 <= findings.frame_number <= frames:
        raise WriterError(f"findings.frame_number {findings.frame_number} is outside the source's "
                          f"{frames} frame(s)")
    shape = (int(source.Rows), int(source.Columns))
    if findings.image.shape != shape:
        raise WriterError(f"findings.image has shape {findings.image.shape}, "
                          f"the source frame {shape}")
    named = [(f"{lobe.side} lobe", lobe.mask) for lobe in findings.lobes]
    named += [(f"nodule {n.number}", n.mask) for n in findings.nodules]
    for name, mask in named:
        if mask.shape != shape:
            raise WriterError(f"mask of {name} has shape {mask.shape}, the source frame {shape}")
        if not np.any(mask):
            raise WriterError(f"mask of {name} is empty")
    if not findings.models:
        raise WriterError("findings.models is empty: every AI result must name the models used")
    for measurement in findings.measurements:
        if measurement.name not in MEASUREMENT_CODES:
            raise WriterError(f"measurement {measurement.name!r} is not one of {MEASUREMENT_NAMES}")


def model_for(findings: Findings, task: str) -> ModelInfo:
    """Return the model that did ``task``; the first model when none declares that task."""
    model = next((m for m in findings.models if m.task == task), None)
    if model is None:
        model = findings.models[0]
        logger.warning("no model with task %r in the findings; crediting %s %s",
                       task, model.name, model.version)
    return model


def model_line(model: ModelInfo) -> str:
    """Return the one-line provenance of ``model`` (name, version, task, SHA-256)."""
    return f"{model.name} {model.version} ({model.task}), SHA-256 {model.sha256}"


def contributing_equipment(findings: Findings, when: str) -> list[hd.ContributingEquipment]:
    """Return one Contributing Equipment item per model (IHE AI Results provenance)."""
    return [
        hd.ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=model.name,
            software_versions=model.version,
            device_serial_number=model.sha256[:64],
            contribution_datetime=when,
            contribution_description=(f"AI model {model_line(model)}, run with "
                                      f"{model.provider} by {MANUFACTURER} {SOFTWARE_VERSION}"),
        )
        for model in findings.models
    ]


def source_datetime(source: Dataset) -> tuple[str, str]:
    """Return the (DA, TM) of the source's content, acquisition, series or study, in that order."""
    for date_kw, time_kw in (("ContentDate", "ContentTime"), ("AcquisitionDate", "AcquisitionTime"),
                             ("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
        date = str(source.get(date_kw) or "")
        if len(date) == 8 and date.isdigit():
            time = str(source.get(time_kw) or "").split(".")[0]
            return date, (time if time.isdigit() and len(time) in (2, 4, 6) else "000000")
    return "19000101", "000000"


def equipment_kwargs(findings: Findings, description: str) -> dict[str, object]:
    """Return the series and equipment keyword arguments shared by every highdicom output."""
    return {
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": f"{findings.pipeline} pipeline",
        "software_versions": SOFTWARE_VERSION,
        # Type 1 in SEG's Enhanced General Equipment; a software node has no serial number.
        "device_serial_number": SOFTWARE_VERSION,
        "series_description": description,
    }


def content_label(findings: Findings) -> str:
    """Return a Content Label (CS, at most 16 of A-Z, 0-9, _) naming the pipeline."""
    return re.sub(r"[^A-Z0-9_]", "_", f"AI_{findings.pipeline.upper()}")[:16]


def derived_uid(uids: OutputUids, *parts: str) -> str:
    """Return a UID derived from the output's SOP Instance UID and ``parts``."""
    return str(generate_uid(entropy_srcs=[uids.sop_instance_uid, *parts]))


def finalize(ds: Dataset, source: Dataset, uids: OutputUids, when: tuple[str, str]) -> Dataset:
    """Copy patient and study from ``source`` and replace every clock- or random-based value."""
    ds.copy_patient_and_study_information(source)
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    date, time = when
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    if "DateOfSecondaryCapture" in ds:
        ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    dimension_uid = derived_uid(uids, "dimension-organization")
    for item in ds.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dimension_uid
    for item in ds.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = dimension_uid
    return ds


def patient_orientation(source: Dataset, findings: Findings) -> tuple[str, str]:
    """Return the source's PatientOrientation, or the one its view implies (anterior: L\\F)."""
    value = source.get("PatientOrientation")
    if value and len(value) == 2 and all(value):
        return str(value[0]), str(value[1])
    return ("R", "F") if findings.view == "posterior" else ("L", "F")


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Return the closed outline of the largest region of ``mask`` along pixel edges.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D boolean mask.

    Returns
    -------
    numpy.ndarray
        (N, 2) float array of (column, row) vertices in DICOM image coordinates (the top-left
        corner of the first pixel is (0, 0)); the first vertex is repeated at the end.

    Examples
    --------
    >>> mask_outline(np.array([[0, 1], [0, 1]], bool)).tolist()
    [[1.0, 0.0], [2.0, 0.0], [2.0, 2.0], [1.0, 2.0], [1.0, 0.0]]
    """
    padded = np.pad(np.asarray(mask, bool), 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r, c in zip(*np.nonzero(padded), strict=True):
        x, y = int(c) - 1, int(r) - 1
        if not padded[r - 1, c]:
            edges.setdefault((x, y), []).append((x + 1, y))
        if not padded[r, c + 1]:
            edges.setdefault((x + 1, y), []).append((x + 1, y + 1))
        if not padded[r + 1, c]:
            edges.setdefault((x + 1, y + 1), []).append((x, y + 1))
        if not padded[r, c - 1]:
            edges.setdefault((x, y + 1), []).append((x, y))
    loops = []
    while edges:
        start = min(edges)
        loop, point = [start], start
        while True:
            ends = edges[point]
            end = ends.pop(0)
            if not ends:
                del edges[point]
            if end == start:
                break
            loop.append(end)
            point = end
        loops.append(loop)
    best = max(loops, key=_signed_area)
    keep = [p for i, p in enumerate(best)
            if not _collinear(best[i - 1], p, best[(i + 1) % len(best)])]
    return np.array([*keep, keep[0]], dtype=float)


def _signed_area(loop: list[tuple[int, int]]) -> float:
    """Shoelace area of a closed loop (positive for outer outlines, y pointing down)."""
    xs = np.array([p[0] for p in loop], float)
    ys = np.array([p[1] for p in loop], float)
    return float(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) / 2)


def _collinear(a: tuple[int, int], b: tuple[int, int], c: tuple[int, int]) -> bool:
    """Return True when b lies on the straight line from a to c."""
    return (b[0] - a[0]) * (c[1] - b[1]) == (b[1] - a[1]) * (c[0] - b[0])
