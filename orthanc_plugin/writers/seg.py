"""DICOM SEG writer: one binary segment per thyroid lobe and per cold-nodule candidate."""

from __future__ import annotations

import copy
import logging

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.tag import Tag

from orthanc_plugin import DISCLAIMER
from orthanc_plugin.errors import WriterError
from orthanc_plugin.findings import Findings, ModelInfo
from orthanc_plugin.uids import OutputUids
from orthanc_plugin.writers import _common as common

logger = logging.getLogger(__name__)

_PIXEL_DATA_TAGS = {Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData")}


def write_seg(source: Dataset, findings: Findings, uids: OutputUids) -> Dataset:
    """Encode the lobes and nodule candidates of ``findings`` as a DICOM Segmentation.

    Parameters
    ----------
    source : pydicom.Dataset
        The NM (or Secondary Capture) instance the pipeline read; it is not modified.
    findings : Findings
        What the pipeline found in frame ``findings.frame_number`` of ``source``.
    uids : OutputUids
        Series and instance identity of the output.

    Returns
    -------
    pydicom.Dataset
        A BINARY Segmentation in the source's study, in a new series, referencing the source
        instance and frame; segments "Thyroid right lobe", "Thyroid left lobe" (when found) and
        "Cold nodule N" for each candidate, each credited to the model that made it.

    Raises
    ------
    WriterError
        If the inputs are inconsistent, there is nothing to segment, or highdicom refuses them.
    """
    common.check_inputs(source, findings)
    masks, descriptions = _segments(findings)
    if not descriptions:
        raise WriterError("no segment to write: the findings hold no lobe and no nodule "
                          f"(pipeline {findings.pipeline!r}, frame {findings.frame_number})")
    when = common.source_datetime(source)
    model_lines = "; ".join(common.model_line(m) for m in findings.models)
    try:
        seg = hd.seg.Segmentation(
            source_images=[_highdicom_source(source, findings)],
            pixel_array=np.stack(masks, axis=-1)[np.newaxis],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=uids.series_instance_uid,
            series_number=uids.series_number,
            sop_instance_uid=uids.sop_instance_uid,
            instance_number=uids.instance_number,
            content_label=common.content_label(findings),
            content_description=DISCLAIMER,
            contributing_equipment=common.contributing_equipment(findings, "".join(when)),
            content_date=when[0],
            content_time=when[1],
            series_date=when[0],
            series_time=when[1],
            **common.equipment_kwargs(findings, f"AI {findings.pipeline} SEG"),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise WriterError(f"highdicom refused the segmentation: {error}") from error
    seg.ImageComments = f"{DISCLAIMER}. Models: {model_lines}"
    seg.PatientOrientation = list(common.patient_orientation(source, findings))
    if not source.get("PixelSpacing"):
        # Only there to satisfy highdicom (see _highdicom_source); a spacing-less measures item
        # would stop readers, highdicom's segread included.
        for shared in seg.get("SharedFunctionalGroupsSequence", []):
            if "PixelMeasuresSequence" in shared:
                del shared.PixelMeasuresSequence
    _reference_frame(seg, source, findings.frame_number)
    logger.debug("SEG %s: %d segment(s)", uids.sop_instance_uid, len(descriptions))
    return common.finalize(seg, source, uids, when)


def _segments(findings: Findings) -> tuple[list[np.ndarray], list[hd.seg.SegmentDescription]]:
    """Return the masks and descriptions of the segments, numbered from 1."""
    masks: list[np.ndarray] = []
    descriptions: list[hd.seg.SegmentDescription] = []
    lobe_model = common.model_for(findings, common.LOBE_TASK)
    for side in ("right", "left"):
        lobe = findings.lobe(side)
        if lobe is None:
            logger.info("no %s lobe in the findings: no segment for it", side)
            continue
        description = _description(
            len(descriptions) + 1, f"Thyroid {side} lobe", codes.SCT.AnatomicalStructure,
            common.THYROID, lobe_model, common.LOBE_COLOURS[side],
        )
        kind = description.SegmentedPropertyTypeCodeSequence[0]
        kind.SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(common.SIDE_CODES[side])]
        masks.append(np.asarray(lobe.mask, bool))
        descriptions.append(description)
    for nodule in findings.nodules:
        nodule_model = common.model_for(findings, common.NODULE_TASK)
        description = _description(
            len(descriptions) + 1, f"Cold nodule {nodule.number}",
            codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule, nodule_model,
            common.NODULE_COLOUR,
        )
        description.AnatomicRegionSequence = [_nodule_region(nodule.lobe)]
        masks.append(np.asarray(nodule.mask, bool))
        descriptions.append(description)
    return masks, descriptions


def _description(number: int, label: str, category: Code, kind: Code, model: ModelInfo,
                 rgb: tuple[int, int, int]) -> hd.seg.SegmentDescription:
    """Return the description of one automatic segment made by ``model``."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model.name,
        family=codes.DCM.ArtificialIntelligence,
        version=model.version,
        source=common.MANUFACTURER,
        parameters={"task": model.task, "sha256": model.sha256},
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*rgb),
    )


def _nodule_region(lobe: str) -> Dataset:
    """Return the anatomic region item of a nodule: thyroid with laterality, or the isthmus."""
    if lobe == "isthmus":
        return hd.sr.CodedConcept.from_code(common.THYROID_ISTHMUS)
    region = hd.sr.CodedConcept.from_code(common.THYROID)
    region.AnatomicRegionModifierSequence = [hd.sr.CodedConcept.from_code(common.SIDE_CODES[lobe])]
    return region


def _highdicom_source(source: Dataset, findings: Findings) -> Dataset:
    """Return the in-memory copy of ``source`` that highdicom accepts as a one-frame NM.

    highdicom treats NM as an enhanced multi-frame image: it reads the pixel spacing from a
    SharedFunctionalGroupsSequence (absent from NM) and accepts a single frame only when there
    is no Frame of Reference. The copy has no pixel data, one frame, no Frame of Reference and
    a shared PixelMeasuresSequence; :func:`_reference_frame` then points the SEG at the real
    frame.
    """
    src = Dataset()
    for element in source:
        if element.tag not in _PIXEL_DATA_TAGS:
            src.add(copy.deepcopy(element))
    if "FrameOfReferenceUID" in src:
        logger.info("source has a Frame of Reference; the planar SEG references the frame only")
        del src.FrameOfReferenceUID
    if not common.is_multiframe(source):
        return src
    src.NumberOfFrames = 1
    measures = Dataset()
    spacing = source.get("PixelSpacing")
    if spacing:
        # auto_format: a source's over-long DS string must not make our SEG invalid
        measures.PixelSpacing = [DSfloat(float(v), auto_format=True) for v in spacing]
    measures.SliceThickness = 1.0
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    src.SharedFunctionalGroupsSequence = [shared]
    return src


def _reference_frame(seg: Dataset, source: Dataset, frame_number: int) -> None:
    """Make every reference to the source name ``frame_number`` (multi-frame sources only)."""
    if not common.is_multiframe(source):
        return
    # highdicom shares these items with ReferencedSeriesSequence, where frames have no place.
    seg.SourceImageSequence = [copy.deepcopy(item) for item in seg.get("SourceImageSequence", [])]
    items = list(seg.SourceImageSequence)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        for derivation in frame.get("DerivationImageSequence", []):
            items.extend(derivation.get("SourceImageSequence", []))
    for item in items:
        if item.ReferencedSOPInstanceUID == source.SOPInstanceUID:
            item.ReferencedFrameNumber = frame_number
