"""DICOM SR writer: a TID 1500 Measurement Report of the lobes, nodules and gland ratios."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from orthanc_plugin import DISCLAIMER, MANUFACTURER, SOFTWARE_VERSION
from orthanc_plugin.errors import WriterError
from orthanc_plugin.findings import Findings, Lobe, ModelInfo, Nodule
from orthanc_plugin.uids import OutputUids
from orthanc_plugin.writers import _common as common

logger = logging.getLogger(__name__)

QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")


def write_sr(source: Dataset, findings: Findings, uids: OutputUids) -> Dataset:
    """Encode the measurements of ``findings`` as a Comprehensive 3D SR (TID 1500).

    One planar-ROI measurement group per lobe (count share, area, length), one per cold-nodule
    candidate (diameter, nodule-to-parenchyma ratio, detector confidence, lobe, pole, type) and
    one gland-level group (thyroid-to-background ratio); every region is a polyline on the
    source frame. The root's Qualitative Evaluations hold the disclaimer, the size-calibration
    flag and one line of provenance per model.

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
        The SR document, in the source's study, in a new series.

    Raises
    ------
    WriterError
        If the inputs are inconsistent or highdicom refuses them.
    """
    common.check_inputs(source, findings)
    when = common.source_datetime(source)
    frames = [findings.frame_number] if common.is_multiframe(source) else None
    try:
        region_source = hd.sr.SourceImageForRegion.from_source_image(
            source, referenced_frame_numbers=frames)
        groups: list[object] = []
        for side in ("right", "left"):
            lobe = findings.lobe(side)
            if lobe is not None:
                groups.append(_lobe_group(findings, lobe, region_source, uids))
        groups.extend(_nodule_group(findings, n, region_source, uids) for n in findings.nodules)
        groups.append(_gland_group(findings, uids, source, frames))
        report = hd.sr.MeasurementReport(
            observation_context=_observation_context(findings),
            procedure_reported=codes.LN.NMUnspecifiedBodyRegion,
            imaging_measurements=groups,
            title=codes.DCM.ImagingMeasurementReport,
            referenced_images=[source],
        )
        report[0].ContentSequence.append(_qualitative_evaluations(findings))
        sr = hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=uids.series_instance_uid,
            series_number=uids.series_number,
            sop_instance_uid=uids.sop_instance_uid,
            instance_number=uids.instance_number,
            is_complete=True,
            contributing_equipment=common.contributing_equipment(findings, "".join(when)),
            coding_schemes=common.coding_schemes(),
            content_date=when[0],
            content_time=when[1],
            series_date=when[0],
            series_time=when[1],
            **common.equipment_kwargs(findings, f"AI {findings.pipeline} SR"),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise WriterError(f"highdicom refused the measurement report: {error}") from error
    logger.debug("SR %s: %d measurement group(s)", uids.sop_instance_uid, len(groups))
    return common.finalize(sr, source, uids, when)


def _algorithm(model: ModelInfo) -> hd.sr.AlgorithmIdentification:
    """Return the TID 4019 identification of ``model`` (SHA-256 as a parameter)."""
    return hd.sr.AlgorithmIdentification(name=model.name, version=model.version,
                                         parameters=[f"sha256={model.sha256}"],
                                         manufacturer=MANUFACTURER)


def _measurements(findings: Findings,
                  values: Sequence[tuple[Code, float, str]]) -> list[hd.sr.Measurement] | None:
    """Return TID 300 measurements, sizes flagged as uncalibrated when they are.

    A value that is not finite (e.g. a ratio over an empty parenchyma) cannot be a DICOM
    decimal string: it is left out and logged.
    """
    found = []
    for name, value, unit in values:
        if not math.isfinite(value):
            logger.info("measurement %r is %r: left out of the SR", name.meaning, value)
            continue
        flagged = common.is_size_unit(unit) and not findings.calibrated
        method = common.UNCALIBRATED if flagged else None
        found.append(hd.sr.Measurement(name=name, value=float(value), unit=common.unit_code(unit),
                                       method=method))
    return found or None


def _tracking(uids: OutputUids, key: str, label: str) -> hd.sr.TrackingIdentifier:
    """Return a tracking identifier whose UID is derived from the output and ``key``."""
    return hd.sr.TrackingIdentifier(uid=common.derived_uid(uids, "tracking", key), identifier=label)


def _region(points_xy: np.ndarray, region_source: hd.sr.SourceImageForRegion) -> hd.sr.ImageRegion:
    """Return a closed polyline region on the source frame."""
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                             graphic_data=np.asarray(points_xy, dtype=float),
                             source_image=region_source)


def _calibration(findings: Findings) -> hd.sr.QualitativeEvaluation:
    """Return the size-calibration flag of the findings."""
    value = common.CALIBRATED if findings.calibrated else common.UNCALIBRATED
    return hd.sr.QualitativeEvaluation(name=common.SIZE_CALIBRATION, value=value)


def _lobe_group(findings: Findings, lobe: Lobe, region_source: hd.sr.SourceImageForRegion,
                uids: OutputUids) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Return the measurement group of one lobe: count share, area and length."""
    model = common.model_for(findings, common.LOBE_TASK)
    values = common.lobe_values(findings, lobe)
    measurements = _measurements(findings, [
        (common.MEASUREMENT_CODES[f"{lobe.side}_{key}"], value, unit)
        for key, (value, unit) in values.items()
    ])
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(uids, f"lobe-{lobe.side}", f"Thyroid {lobe.side} lobe"),
        referenced_region=_region(common.mask_outline(lobe.mask), region_source),
        finding_type=common.THYROID,
        finding_category=codes.SCT.AnatomicalStructure,
        finding_sites=[hd.sr.FindingSite(common.THYROID, laterality=common.SIDE_CODES[lobe.side])],
        algorithm_id=_algorithm(model),
        measurements=measurements,
        qualitative_evaluations=[_calibration(findings)],
    )


def _nodule_group(findings: Findings, nodule: Nodule, region_source: hd.sr.SourceImageForRegion,
                  uids: OutputUids) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Return the measurement group of one cold-nodule candidate."""
    model = common.model_for(findings, common.NODULE_TASK)
    diameter = ((nodule.diameter_mm, "mm") if nodule.diameter_mm is not None
                else (nodule.diameter_px, "{pixels}"))
    outline = common.mask_outline(nodule.mask)
    if nodule.lobe == "isthmus":
        site = hd.sr.FindingSite(common.THYROID_ISTHMUS)
    else:
        site = hd.sr.FindingSite(common.THYROID, laterality=common.SIDE_CODES[nodule.lobe])
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(uids, f"nodule-{nodule.number}",
                                      f"Cold nodule {nodule.number}"),
        referenced_region=_region(outline, region_source),
        finding_type=codes.SCT.Nodule,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_sites=[site],
        algorithm_id=_algorithm(model),
        measurements=_measurements(findings, [
            (codes.SCT.Diameter, *diameter),
            (common.NODULE_TO_PARENCHYMA, nodule.nodule_to_parenchyma_ratio, "{ratio}"),
            (common.DETECTOR_CONFIDENCE, nodule.confidence, "1"),
        ]),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=common.NODULE_TYPE, value=common.COLD),
            hd.sr.QualitativeEvaluation(name=common.POLE, value=common.POLES[nodule.pole]),
            _calibration(findings),
        ],
    )


def _gland_group(findings: Findings, uids: OutputUids, source: Dataset,
                 frames: list[int] | None) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Return the gland-level group: every measurement that belongs to no lobe."""
    model = common.model_for(findings, common.LOBE_TASK)
    measurements = _measurements(findings, [
        (common.MEASUREMENT_CODES[m.name], m.value, m.unit)
        for m in findings.measurements if not m.name.startswith(("right_", "left_"))
    ])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(uids, "gland", "Thyroid gland"),
        finding_type=common.THYROID,
        finding_category=codes.SCT.AnatomicalStructure,
        finding_sites=[hd.sr.FindingSite(common.THYROID)],
        algorithm_id=_algorithm(model),
        measurements=measurements,
        qualitative_evaluations=[_calibration(findings)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(
            source, referenced_frame_numbers=frames)],
    )


def _observation_context(findings: Findings) -> hd.sr.ObservationContext:
    """Return the observer context: this node, as a device, running the named pipeline."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=str(generate_uid(entropy_srcs=[MANUFACTURER, findings.pipeline])),
        name=f"{MANUFACTURER} {findings.pipeline} pipeline",
        manufacturer_name=MANUFACTURER,
        model_name=f"{findings.pipeline} pipeline {SOFTWARE_VERSION}",
    )
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    """Return a TEXT item contained in its parent."""
    return hd.sr.TextContentItem(name=name, value=value,
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _qualitative_evaluations(findings: Findings) -> hd.sr.ContainerContentItem:
    """Return the TID 1500 Qualitative Evaluations container: disclaimer, flags, provenance."""
    items: Sequence[Dataset] = [
        _text(codes.DCM.Comment, DISCLAIMER),
        hd.sr.CodeContentItem(
            name=common.SIZE_CALIBRATION,
            value=common.CALIBRATED if findings.calibrated else common.UNCALIBRATED,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS),
        *(_text(common.AI_MODEL, common.model_line(m)) for m in findings.models),
        *(_text(codes.DCM.Comment, warning) for warning in findings.warnings),
    ]
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container
