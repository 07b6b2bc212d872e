"""What a pipeline returns: plain frozen dataclasses, no Orthanc, no DICOM.

Coordinates are (row, column) in the pixels of the *source frame* (the frame of the source
instance the pipeline read, ``frame_number`` counting from 1 as DICOM does). Masks have the shape of
that frame. "right" and "left" are always the patient's, taken from the view's orientation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Side = Literal["right", "left"]
NoduleLobe = Literal["right", "left", "isthmus"]
Pole = Literal["upper", "middle", "lower"]


@dataclass(frozen=True)
class ModelInfo:
    """Provenance of one model used for a result (IHE AI Results, Contributing Equipment)."""

    task: str  # e.g. "thyroid-segmentation", "cold-nodule-detection"
    name: str  # e.g. "thyroid-seg-unet"
    version: str  # e.g. "1.0.0"
    sha256: str  # hex digest of the ONNX file
    provider: str = "CPUExecutionProvider"


@dataclass(frozen=True)
class Lobe:
    """One thyroid lobe, segmented by the network."""

    side: Side
    mask: np.ndarray = field(repr=False)  # bool, shape of the source frame
    counts: float  # sum of source-frame counts inside the mask
    count_share_percent: float  # share of the two lobes' counts, 0-100
    area_px: int
    length_px: float  # extent along the lobe's long axis
    area_mm2: float | None  # None when no pixel spacing is known
    length_mm: float | None


@dataclass(frozen=True)
class Nodule:
    """One cold-nodule candidate (sensitive by design: a prompt for the reader, not a finding)."""

    number: int  # 1-based, in the order shown on the overlay and in SEG / SR
    lobe: NoduleLobe
    pole: Pole
    mask: np.ndarray = field(repr=False)  # bool, shape of the source frame
    centroid_rc: tuple[float, float]
    diameter_px: float  # equivalent-circle diameter
    diameter_mm: float | None
    nodule_to_parenchyma_ratio: float  # mean counts in nodule / mean counts in rest of its lobe
    confidence: float  # detector confidence, 0-1


@dataclass(frozen=True)
class Measurement:
    """One named study-level measurement, written to the SR and shown in the overlay legend."""

    name: str  # key from MEASUREMENT_NAMES below
    value: float
    unit: str  # UCUM: "%", "{ratio}", "mm", "mm2"


# Every Measurement.name the thyroid pipeline produces; writers map them to codes.
MEASUREMENT_NAMES = (
    "right_count_share",  # %
    "left_count_share",  # %
    "thyroid_to_background_ratio",  # {ratio}
    "right_lobe_area",  # mm2 (or px when uncalibrated: see Findings.calibrated)
    "left_lobe_area",
    "right_lobe_length",  # mm
    "left_lobe_length",
)


@dataclass(frozen=True)
class Findings:
    """Everything one pipeline run found in one source frame."""

    pipeline: str  # e.g. "thyroid"
    variant: str  # rule's options summarised, e.g. "tc99m"; "" when none
    frame_number: int  # 1-based frame of the source instance that was read
    image: np.ndarray = field(repr=False)  # float32 counts of that frame, for overlays
    pixel_spacing_mm: tuple[float, float] | None  # (row, col) spacing used for sizes
    calibrated: bool  # False: sizes come from stored PixelSpacing and are not patient-plane sizes
    view: str  # "anterior" or "posterior": decides which image side is the patient's right
    lobes: tuple[Lobe, ...]
    nodules: tuple[Nodule, ...]
    measurements: tuple[Measurement, ...]
    models: tuple[ModelInfo, ...]
    warnings: tuple[str, ...] = ()

    def measurement(self, name: str) -> Measurement | None:
        """Return the measurement called ``name``, or None."""
        return next((m for m in self.measurements if m.name == name), None)

    def lobe(self, side: Side) -> Lobe | None:
        """Return the lobe on the patient's ``side``, or None when it was not found."""
        return next((lobe for lobe in self.lobes if lobe.side == side), None)
