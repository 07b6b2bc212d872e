"""Synthetic DICOM inputs shaped the way gamma cameras and old gateways send them.

``nm_dataset`` wraps count frames in an NM Image Storage instance (always multi-frame, with
energy-window and detector vectors, isotope and detector sequences, a pinhole collimator and a
view code); ``secondary_capture_nm`` wraps one image in the old-gateway form (Secondary Capture
with Modality NM and none of the NM attributes). Both are deterministic: the same arguments give
the same UIDs and the same bytes, so tests and the demo can rely on them.

Used by the unit tests, the demo and the integration tests; the plugin never imports it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.valuerep import DSfloat
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

logger = logging.getLogger(__name__)

Radionuclide = Literal["tc99m", "i123"]
View = Literal["anterior", "posterior"]

IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["orthanc-ai-node", "synthetic_nm"])
IMPLEMENTATION_VERSION_NAME = "SYNTH_NM_1"

# Radionuclide code (SRT, as many cameras still send), radiopharmaceutical (SCT, CID 25),
# photopeak and scatter windows in keV.
RADIONUCLIDES: dict[str, dict[str, object]] = {
    "tc99m": {
        "nuclide": ("C-163A8", "SRT", "^99m^Technetium"),
        "pharmaceutical": ("19495007", "SCT", "Sodium pertechnetate Tc^99m^"),
        "pharmaceutical_text": "Tc-99m pertechnetate",
        "photopeak": (126.0, 154.0),
        "scatter": (108.0, 126.0),
        "dose_mbq": 80.0,
    },
    "i123": {
        "nuclide": ("C-114A4", "SRT", "^123^Iodine"),
        "pharmaceutical": ("67690002", "SCT", "Sodium iodide I^123^"),
        "pharmaceutical_text": "I-123 sodium iodide",
        "photopeak": (143.0, 175.0),
        "scatter": (123.0, 143.0),
        "dose_mbq": 7.4,
    },
}

# CID 26 "Nuclear Medicine Projection"; PatientOrientation of a planar view of the neck
# (row direction, column direction): anterior view columns run to the patient's left.
VIEWS: dict[str, tuple[tuple[str, str, str], tuple[str, str]]] = {
    "anterior": (("399321004", "SCT", "Anterior projection"), ("L", "F")),
    "posterior": (("399001007", "SCT", "Posterior projection"), ("R", "F")),
}

_ENERGY_WINDOW_VECTOR = 0x00540010
_DETECTOR_VECTOR = 0x00540020


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """Return one code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _uid(*parts: object) -> str:
    """Return a UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
               source_ae_title: str | None) -> FileMetaDataset:
    """Return the file meta information of a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_ae_title:
        meta.SourceApplicationEntityTitle = source_ae_title
    return meta


def _patient_study_series(ds: Dataset, *, patient_id: str, patient_name: str,
                          patient_birth_date: str, patient_sex: str, study_instance_uid: str,
                          study_date: str, study_time: str, study_id: str,
                          accession_number: str, study_description: str,
                          series_instance_uid: str, series_number: int,
                          series_description: str, manufacturer: str,
                          manufacturer_model_name: str, station_name: str,
                          institution_name: str) -> None:
    """Fill the patient, study, series and equipment modules."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study_id
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = study_date
    ds.SeriesTime = study_time
    ds.Modality = "NM"
    ds.BodyPartExamined = "THYROID"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = manufacturer_model_name
    ds.StationName = station_name
    ds.InstitutionName = institution_name


def _frame_layout(n_frames: int, views: Sequence[str],
                  windows: Sequence[tuple[str, float, float]]) -> tuple[list[int], list[int]]:
    """Return the (EnergyWindowVector, DetectorVector) of ``n_frames`` STATIC frames."""
    n_windows, n_detectors = len(windows), len(views)
    if n_windows * n_detectors != n_frames:
        raise ValueError(
            f"{n_frames} frame(s) cannot be laid out as {n_windows} energy window(s) x "
            f"{n_detectors} detector(s): give energy_windows and detectors_views whose "
            "product is the number of frames"
        )
    energy = [i // n_detectors + 1 for i in range(n_frames)]
    detector = [i % n_detectors + 1 for i in range(n_frames)]
    return energy, detector


def nm_dataset(
    frames: np.ndarray,
    *,
    patient_id: str = "SYNTH-0001",
    patient_name: str = "Synthetic^Thyroid",
    patient_birth_date: str = "19700101",
    patient_sex: str = "F",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    study_date: str = "20260115",
    study_time: str = "093000",
    study_id: str = "1",
    accession_number: str = "ACC0001",
    series_number: int = 1,
    instance_number: int = 1,
    pixel_spacing_mm: float | None = 2.0,
    radionuclide: Radionuclide | None = "tc99m",
    study_description: str = "Thyroid scintigraphy",
    series_description: str = "Thyroid ANT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "STATIC", "EMISSION"),
    view: View = "anterior",
    detectors_views: Sequence[View] | None = None,
    energy_windows: Sequence[tuple[str, float, float]] | None = None,
    frame_duration_ms: int = 300_000,
    manufacturer: str = "Synthetic Gamma",
    manufacturer_model_name: str = "PinholeCam 1",
    station_name: str = "NMCAM1",
    institution_name: str = "Synthetic Hospital",
    source_ae_title: str | None = "NMCAM1",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """Build an NM Image Storage instance holding ``frames`` as a gamma camera would.

    Parameters
    ----------
    frames : numpy.ndarray
        Counts, shape (H, W) or (F, H, W); stored as uint16 (values are clipped to 0-65535).
    patient_id, patient_name, patient_birth_date, patient_sex : str
        Patient module.
    study_instance_uid, series_instance_uid, sop_instance_uid : str, optional
        UIDs; each one not given is derived from the other arguments (deterministic).
    study_date, study_time, study_id, accession_number : str
        General Study module (dates DA ``YYYYMMDD``, times TM ``HHMMSS``).
    series_number, instance_number : int
        General Series / General Image numbers.
    pixel_spacing_mm : float or None
        Stored PixelSpacing (both directions); None leaves it empty (it is type 2 in NM).
    radionuclide : {"tc99m", "i123"} or None
        Fills RadiopharmaceuticalInformationSequence and chooses the energy windows; None leaves
        the sequence empty (windows then default to the Tc-99m ones).
    study_description, series_description : str
        Free-text descriptions.
    image_type : sequence of str
        ImageType; value 3 STATIC makes the frame increment pointer EnergyWindow\\Detector.
    view : {"anterior", "posterior"}
        View of the single detector when ``detectors_views`` is not given.
    detectors_views : sequence of {"anterior", "posterior"}, optional
        One view per detector (e.g. ``("anterior", "posterior")`` for a dual-head camera).
    energy_windows : sequence of (name, lower_keV, upper_keV), optional
        Energy windows; default is the photopeak for one frame per detector and photopeak +
        scatter for two frames per detector.
    frame_duration_ms : int
        ActualFrameDuration of each frame.
    manufacturer, manufacturer_model_name, station_name, institution_name : str
        General Equipment module.
    source_ae_title : str or None
        SourceApplicationEntityTitle of the file meta (the camera's AE title).
    transfer_syntax : str
        Transfer syntax UID; compressed ones are encoded with pydicom (RLE Lossless works with
        no extra package).

    Returns
    -------
    pydicom.Dataset
        The NM instance, with file meta, ready for :func:`write`.

    Raises
    ------
    ValueError
        If ``frames`` is not 2-D or 3-D, or the frames cannot be laid out as windows x detectors.

    Examples
    --------
    >>> ds = nm_dataset(np.zeros((2, 64, 64)), radionuclide="i123")
    >>> int(ds.NumberOfFrames), list(ds.EnergyWindowVector)
    (2, [1, 2])
    """
    counts = np.asarray(frames)
    if counts.ndim == 2:
        counts = counts[np.newaxis]
    if counts.ndim != 3 or 0 in counts.shape:
        raise ValueError(f"frames must have shape (H, W) or (F, H, W), got {np.shape(frames)}")
    pixels = np.clip(np.rint(counts), 0, 65535).astype("<u2")
    n_frames, rows, columns = pixels.shape
    nuclide = RADIONUCLIDES[radionuclide] if radionuclide else RADIONUCLIDES["tc99m"]
    views = list(detectors_views) if detectors_views else [view]
    for v in views:
        if v not in VIEWS:
            raise ValueError(f"view {v!r} is not one of {sorted(VIEWS)}")
    if energy_windows is None:
        per_detector = n_frames // len(views)
        energy_windows = [("PHOTOPEAK", *nuclide["photopeak"])]  # type: ignore[list-item]
        if per_detector == 2:
            energy_windows.append(("SCATTER", *nuclide["scatter"]))  # type: ignore[arg-type]
    energy_vector, detector_vector = _frame_layout(n_frames, views, energy_windows)

    study_instance_uid = study_instance_uid or _uid(patient_id, study_date, study_description)
    series_instance_uid = series_instance_uid or _uid(study_instance_uid, series_number,
                                                      series_description)
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    sop_instance_uid = sop_instance_uid or _uid(series_instance_uid, instance_number, digest)

    ds = Dataset()
    ds.file_meta = _file_meta(NuclearMedicineImageStorage, sop_instance_uid,
                              ExplicitVRLittleEndian, source_ae_title)
    _patient_study_series(
        ds, patient_id=patient_id, patient_name=patient_name,
        patient_birth_date=patient_birth_date, patient_sex=patient_sex,
        study_instance_uid=study_instance_uid, study_date=study_date, study_time=study_time,
        study_id=study_id, accession_number=accession_number,
        study_description=study_description, series_instance_uid=series_instance_uid,
        series_number=series_number, series_description=series_description,
        manufacturer=manufacturer, manufacturer_model_name=manufacturer_model_name,
        station_name=station_name, institution_name=institution_name,
    )
    ds.SOPClassUID = NuclearMedicineImageStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ImageType = list(image_type)
    ds.ContentDate = study_date
    ds.ContentTime = study_time
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = study_time
    ds.PatientOrientation = list(VIEWS[views[0]][1])

    # NM/PET Patient Orientation module: supine, recumbent, head first.
    orientation = _code("102538003", "SCT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = [_code("40199007", "SCT", "supine")]
    ds.PatientOrientationCodeSequence = [orientation]
    ds.PatientGantryRelationshipCodeSequence = [_code("102540008", "SCT", "headfirst")]
    ds.AcquisitionContextSequence = []

    # Image pixel + NM image pixel.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    spacing = DSfloat(pixel_spacing_mm, auto_format=True) if pixel_spacing_mm else None
    ds.PixelSpacing = [spacing, spacing] if spacing else None
    ds.SmallestImagePixelValue = int(pixels.min())
    ds.LargestImagePixelValue = int(pixels.max())

    # Multi-frame + NM multi-frame.
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = [_ENERGY_WINDOW_VECTOR, _DETECTOR_VECTOR]
    ds.EnergyWindowVector = energy_vector
    ds.NumberOfEnergyWindows = len(energy_windows)
    ds.DetectorVector = detector_vector
    ds.NumberOfDetectors = len(views)

    # NM image module.
    ds.CountsAccumulated = int(pixels.sum(dtype=np.int64))
    ds.ActualFrameDuration = frame_duration_ms
    ds.LossyImageCompression = "00"

    # NM isotope module.
    ds.EnergyWindowInformationSequence = []
    for name, lower, upper in energy_windows:
        window = Dataset()
        window_range = Dataset()
        window_range.EnergyWindowLowerLimit = lower
        window_range.EnergyWindowUpperLimit = upper
        window.EnergyWindowRangeSequence = [window_range]
        window.EnergyWindowName = name
        ds.EnergyWindowInformationSequence.append(window)
    ds.RadiopharmaceuticalInformationSequence = []
    if radionuclide:
        info = Dataset()
        info.RadionuclideCodeSequence = [_code(*nuclide["nuclide"])]  # type: ignore[misc]
        info.Radiopharmaceutical = nuclide["pharmaceutical_text"]
        info.RadiopharmaceuticalCodeSequence = [_code(*nuclide["pharmaceutical"])]  # type: ignore[misc]
        info.RadiopharmaceuticalRoute = "Intravenous" if radionuclide == "tc99m" else "Oral"
        info.RadionuclideTotalDose = nuclide["dose_mbq"]
        ds.RadiopharmaceuticalInformationSequence.append(info)

    # NM detector module.
    ds.DetectorInformationSequence = []
    for v in views:
        detector = Dataset()
        detector.CollimatorGridName = "PINHOLE 4MM"
        detector.CollimatorType = "PINH"
        detector.FieldOfViewShape = "ROUND"
        detector.FocalDistance = None
        detector.XFocusCenter = None
        detector.YFocusCenter = None
        detector.ZoomFactor = [1.0, 1.0]
        detector.ImagePositionPatient = None  # type 2: planar views carry no patient geometry
        detector.ImageOrientationPatient = None
        view_code = _code(*VIEWS[v][0])
        view_code.ViewModifierCodeSequence = []
        detector.ViewCodeSequence = [view_code]
        ds.DetectorInformationSequence.append(detector)

    ds.PixelData = pixels.tobytes()
    return _apply_transfer_syntax(ds, transfer_syntax)


def secondary_capture_nm(
    image: np.ndarray,
    *,
    patient_id: str = "SYNTH-0002",
    patient_name: str = "Synthetic^Gateway",
    patient_birth_date: str = "19650101",
    patient_sex: str = "M",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    study_date: str = "20260115",
    study_time: str = "101500",
    study_id: str = "2",
    accession_number: str = "ACC0002",
    series_number: int = 1,
    instance_number: int = 1,
    study_description: str = "Thyroid scintigraphy",
    series_description: str = "Thyroid",
    manufacturer: str = "Synthetic Gateway",
    source_ae_title: str | None = "OLDGW",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """Build an old-gateway Secondary Capture of an NM image (Modality NM, no NM attributes).

    Parameters
    ----------
    image : numpy.ndarray
        One grey image, shape (H, W); uint8 is stored as 8 bits, anything else as uint16.
    patient_id, patient_name, patient_birth_date, patient_sex : str
        Patient module.
    study_instance_uid, series_instance_uid, sop_instance_uid : str, optional
        UIDs; each one not given is derived from the other arguments (deterministic).
    study_date, study_time, study_id, accession_number, study_description : str
        General Study module.
    series_number, instance_number : int
        General Series / General Image numbers.
    series_description, manufacturer : str
        Series description and the gateway's name.
    source_ae_title : str or None
        SourceApplicationEntityTitle of the file meta (the gateway's AE title).
    transfer_syntax : str
        Transfer syntax UID; compressed ones are encoded with pydicom.

    Returns
    -------
    pydicom.Dataset
        The SC instance, with file meta.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D.
    """
    values = np.asarray(image)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"image must have shape (H, W), got {values.shape}")
    bits = 8 if values.dtype == np.uint8 else 16
    pixels = np.clip(np.rint(values), 0, 2**bits - 1).astype("u1" if bits == 8 else "<u2")

    study_instance_uid = study_instance_uid or _uid(patient_id, study_date, study_description)
    series_instance_uid = series_instance_uid or _uid(study_instance_uid, series_number,
                                                      series_description)
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    sop_instance_uid = sop_instance_uid or _uid(series_instance_uid, instance_number, digest)

    ds = Dataset()
    ds.file_meta = _file_meta(SecondaryCaptureImageStorage, sop_instance_uid,
                              ExplicitVRLittleEndian, source_ae_title)
    _patient_study_series(
        ds, patient_id=patient_id, patient_name=patient_name,
        patient_birth_date=patient_birth_date, patient_sex=patient_sex,
        study_instance_uid=study_instance_uid, study_date=study_date, study_time=study_time,
        study_id=study_id, accession_number=accession_number,
        study_description=study_description, series_instance_uid=series_instance_uid,
        series_number=series_number, series_description=series_description,
        manufacturer=manufacturer, manufacturer_model_name="Gateway",
        station_name=source_ae_title or "GATEWAY", institution_name="Synthetic Hospital",
    )
    del ds.BodyPartExamined
    ds.Laterality = None
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate = study_date
    ds.ContentTime = study_time
    ds.PatientOrientation = ""
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return _apply_transfer_syntax(ds, transfer_syntax)


def _apply_transfer_syntax(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Encode ``ds`` (built uncompressed, explicit VR) in ``transfer_syntax``."""
    syntax = UID(transfer_syntax)
    if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
    elif syntax.is_compressed:
        ds.compress(syntax)
    else:
        raise ValueError(f"transfer syntax {transfer_syntax} is not supported here")
    return ds


def write(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta) and return the path.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset from :func:`nm_dataset` or :func:`secondary_capture_nm`.
    path : str or pathlib.Path
        Destination file; parent folders are created.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    logger.debug("wrote %s (%s)", target, ds.SOPClassUID.name)
    return target
