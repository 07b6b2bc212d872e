"""Synthetic annotated NM thyroid studies for the mining tests: one image, one annotation each.

The image is a phantom from ``training.phantoms`` wrapped by ``training.synthetic_nm``; the
annotation is made from the phantom's true masks (thyroid = lobes and isthmus, nodule = the cold
nodules) in the formats departments produce: a DICOM SEG (highdicom, MANUAL segments), an RT
Structure Set (pydicom; contours along pixel edges in the planar convention of
``training/annotations.py``), an ImageJ ROI Manager zip, or PNG masks.
"""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from training import imagej_roi, phantoms, synthetic_nm

STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (RT study references)


def truth(phantom: phantoms.Phantom) -> np.ndarray:
    """The phantom's label mask: 1 thyroid, 2 cold nodule."""
    mask = (phantom.lobe_mask > 0).astype(np.uint8)
    mask[phantom.nodule_mask > 0] = 2
    return mask


def nm_image(name: str, seed: int) -> tuple[Dataset, phantoms.Phantom]:
    """An NM study of one anterior image with identifiers unique to ``name``."""
    phantom = phantoms.generate(seed, nodules="cold")
    ds = synthetic_nm.nm_dataset(
        phantom.image, patient_id=f"PID-MINE-{name.upper()}", patient_name=f"Miner^{name.capitalize()}one",
        accession_number=f"ACCM-{name.upper()}"[:16], pixel_spacing_mm=phantom.stored_pixel_spacing_mm,
        study_instance_uid=generate_uid(entropy_srcs=["mining", name, str(seed)]))
    return ds, phantom


def outlines(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Every closed outline of ``mask`` along pixel edges, as (x, y) pixel-corner vertices.

    Outer outlines run clockwise on screen (positive shoelace area with y down), holes the
    other way; collinear vertices are dropped.
    """
    padded = np.pad(np.asarray(mask, bool), 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r, c in zip(*np.nonzero(padded), strict=True):
        x, y = int(c) - 1, int(r) - 1
        for blocked, start, end in ((padded[r - 1, c], (x, y), (x + 1, y)),
                                    (padded[r, c + 1], (x + 1, y), (x + 1, y + 1)),
                                    (padded[r + 1, c], (x + 1, y + 1), (x, y + 1)),
                                    (padded[r, c - 1], (x, y + 1), (x, y))):
            if not blocked:
                edges.setdefault(start, []).append(end)
    loops = []
    while edges:
        start = min(edges)
        loop, point = [start], start
        while True:
            end = edges[point].pop(0)
            if not edges[point]:
                del edges[point]
            if end == start:
                break
            loop.append(end)
            point = end
        loops.append([p for i, p in enumerate(loop) if (p[0] - loop[i - 1][0]) * (loop[(i + 1) % len(loop)][1] - p[1])
                      != (p[1] - loop[i - 1][1]) * (loop[(i + 1) % len(loop)][0] - p[0])])
    return loops


def area(loop: list[tuple[int, int]]) -> float:
    """Signed shoelace area (positive for outer outlines)."""
    xs, ys = np.array(loop, float).T
    return float(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) / 2)


def _regions(phantom: phantoms.Phantom) -> list[tuple[str, np.ndarray]]:
    regions = [("Thyroid", phantom.lobe_mask > 0)]
    if phantom.nodule_mask.any():
        regions.append(("Cold nodule", phantom.nodule_mask > 0))
    return regions


def seg_for(image: Dataset, phantom: phantoms.Phantom, *, automatic: bool = False) -> Dataset:
    """A physician's DICOM SEG (MANUAL) of the image: segments "Thyroid" and "Cold nodule".

    ``automatic=True`` makes it an algorithm's SEG instead (AUTOMATIC, like the node's results).

    highdicom 0.28 reads NM pixel spacing from a SharedFunctionalGroupsSequence that NM files
    lack: it gets an in-memory copy with one (the stored image is untouched), and the SEG's
    references then name frame 1 explicitly.
    """
    source = Dataset()
    for element in image:
        if element.keyword != "PixelData":
            source.add(copy.deepcopy(element))
    measures = Dataset()
    measures.PixelSpacing = image.PixelSpacing
    measures.SliceThickness = 1.0
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    source.SharedFunctionalGroupsSequence = [shared]
    source.NumberOfFrames = 1  # the SEG covers frame 1 only
    descriptions, masks = [], []
    for number, (label, mask) in enumerate(_regions(phantom), start=1):
        category, kind = ((codes.SCT.AnatomicalStructure, codes.SCT.Thyroid) if number == 1 else
                          (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule))
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type="AUTOMATIC" if automatic else "MANUAL",
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="net", family=codes.DCM.ArtificialIntelligence, version="1") if automatic else None))
        masks.append(mask)
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=np.stack(masks, axis=-1)[np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=[image.SOPInstanceUID, "seg-series"]), series_number=80,
        sop_instance_uid=generate_uid(entropy_srcs=[image.SOPInstanceUID, "seg"]), instance_number=1,
        manufacturer="Synthetic Reader", manufacturer_model_name="Hand", software_versions="1",
        device_serial_number="0")
    seg.SourceImageSequence = [copy.deepcopy(item) for item in seg.get("SourceImageSequence", [])]
    items = list(seg.SourceImageSequence)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        for derivation in frame.get("DerivationImageSequence", []):
            items.extend(derivation.get("SourceImageSequence", []))
    for item in items:
        item.ReferencedFrameNumber = 1
    return seg


def _image_ref(image: Dataset, frame: bool = True) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = image.SOPClassUID
    item.ReferencedSOPInstanceUID = image.SOPInstanceUID
    if frame:
        item.ReferencedFrameNumber = 1
    return item


def rtstruct_for(image: Dataset, phantom: phantoms.Phantom) -> Dataset:
    """An RT Structure Set of the image: ROIs "Thyroid", "Cold nodule" and a point "Chin marker".

    ContourData (mm) is x = column corner x PixelSpacing[1], y = row corner x PixelSpacing[0],
    z = 0; every outline of a region is one CLOSED_PLANAR contour (holes included).
    """
    uid = generate_uid(entropy_srcs=[image.SOPInstanceUID, "rtstruct"])
    rt = Dataset()
    rt.file_meta = FileMetaDataset()
    rt.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    rt.file_meta.MediaStorageSOPInstanceUID = uid
    rt.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                    "ReferringPhysicianName", "StudyDescription"):
        setattr(rt, keyword, image.get(keyword))
    rt.SOPClassUID, rt.SOPInstanceUID = RTStructureSetStorage, uid
    rt.Modality, rt.SeriesNumber = "RTSTRUCT", 81
    rt.SeriesInstanceUID = generate_uid(entropy_srcs=[image.SOPInstanceUID, "rtstruct-series"])
    rt.Manufacturer = "Synthetic Reader"
    rt.StructureSetLabel, rt.StructureSetDate, rt.StructureSetTime = "Thyroid", image.StudyDate, image.StudyTime
    frame_of_reference = generate_uid(entropy_srcs=[image.SOPInstanceUID, "for"])
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ContourImageSequence = [_image_ref(image)]
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = STUDY_REFERENCE_CLASS, image.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    reference = Dataset()
    reference.FrameOfReferenceUID = frame_of_reference
    reference.RTReferencedStudySequence = [study]
    rt.ReferencedFrameOfReferenceSequence = [reference]
    rows_mm, cols_mm = (float(v) for v in image.PixelSpacing)
    rt.StructureSetROISequence, rt.ROIContourSequence, rt.RTROIObservationsSequence = [], [], []
    regions = [(name, [("CLOSED_PLANAR", [(x * cols_mm, y * rows_mm) for x, y in loop]) for loop in outlines(mask)])
               for name, mask in _regions(phantom)]
    regions.append(("Chin marker", [("POINT", [(64 * cols_mm, 5 * rows_mm)])]))
    for number, (name, contours) in enumerate(regions, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame_of_reference, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        rt.StructureSetROISequence.append(roi)
        contour_items = []
        for kind, points in contours:
            item = Dataset()
            item.ContourImageSequence = [_image_ref(image)]
            item.ContourGeometricType = kind
            item.NumberOfContourPoints = len(points)
            item.ContourData = [f"{v:.4f}" for x, y in points for v in (x, y, 0.0)]
            contour_items.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = number, [255, 128, 0]
        roi_contour.ContourSequence = contour_items
        rt.ROIContourSequence.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN" if number < 3 else "MARKER", ""
        rt.RTROIObservationsSequence.append(observation)
    return rt


def imagej_zip(path: Path, phantom: phantoms.Phantom) -> Path:
    """A Fiji ROI Manager set: one traced ROI per thyroid outline, one polygon per nodule."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, mask in _regions(phantom):
            kind = "traced" if name == "Thyroid" else "polygon"
            for index, loop in enumerate((lp for lp in outlines(mask) if area(lp) > 0), start=1):
                xs, ys = [p[0] for p in loop], [p[1] for p in loop]
                roi = imagej_roi.ImageJRoi(kind, min(ys), min(xs), max(ys), max(xs), tuple(map(float, xs)),
                                           tuple(map(float, ys)), name=f"{name} {index}")
                archive.writestr(f"{min(ys):04d}-{min(xs):04d}-{index}.roi", imagej_roi.encode(roi))
    return path


def png_masks(folder: Path, phantom: phantoms.Phantom) -> Path:
    """``thyroid.png`` (0/255) and, when there are cold nodules, ``nodule.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in _regions(phantom):
        file_name = "thyroid.png" if name == "Thyroid" else "nodule.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / file_name)
    return folder
