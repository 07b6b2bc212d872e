"""Secondary Capture writer: an RGB overlay anyone can view, in Orthanc Explorer or any PACS."""

from __future__ import annotations

import logging

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from orthanc_plugin import DISCLAIMER
from orthanc_plugin.errors import WriterError
from orthanc_plugin.findings import Findings
from orthanc_plugin.uids import OutputUids
from orthanc_plugin.writers import _common as common
from orthanc_plugin.writers import _overlay

logger = logging.getLogger(__name__)


def write_sc(source: Dataset, findings: Findings, uids: OutputUids) -> Dataset:
    """Render ``findings`` over the source frame as an RGB Secondary Capture.

    The picture shows the frame windowed from 0 to its 99.5th percentile, the two lobe
    outlines labelled R and L on the patient's sides, each cold-nodule candidate outlined and
    numbered, a legend with the measurements and models, and the disclaimer burnt in.

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
        The Secondary Capture (Modality OT, burnt-in annotation), in the source's study, in a
        new series, with a Source Image Sequence naming the source instance and frame.

    Raises
    ------
    WriterError
        If the inputs are inconsistent or highdicom refuses them.
    """
    common.check_inputs(source, findings)
    when = common.source_datetime(source)
    pixels = _overlay.render(findings)
    try:
        sc = hd.sc.SCImage(
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            study_instance_uid=source.StudyInstanceUID,
            series_instance_uid=uids.series_instance_uid,
            series_number=uids.series_number,
            sop_instance_uid=uids.sop_instance_uid,
            instance_number=uids.instance_number,
            patient_id=source.get("PatientID"),
            patient_name=source.get("PatientName"),
            patient_birth_date=source.get("PatientBirthDate"),
            patient_sex=source.get("PatientSex"),
            accession_number=source.get("AccessionNumber"),
            study_id=source.get("StudyID"),
            study_date=source.get("StudyDate") or None,
            study_time=source.get("StudyTime") or None,
            referring_physician_name=source.get("ReferringPhysicianName"),
            patient_orientation=common.patient_orientation(source, findings),
            contributing_equipment=common.contributing_equipment(findings, "".join(when)),
            content_date=when[0],
            content_time=when[1],
            series_date=when[0],
            series_time=when[1],
            **common.equipment_kwargs(findings, f"AI {findings.pipeline} overlay"),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise WriterError(f"highdicom refused the overlay: {error}") from error
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = source.get("Laterality")  # type 2C: empty unless the source had one
    sc.ImageComments = DISCLAIMER
    sc.DerivationDescription = (f"AI {findings.pipeline} results drawn over frame "
                                f"{findings.frame_number} of the source image")
    sc.SourceImageSequence = [_source_reference(source, findings.frame_number)]
    logger.debug("SC %s: %dx%d px", uids.sop_instance_uid, pixels.shape[1], pixels.shape[0])
    return common.finalize(sc, source, uids, when)


def _source_reference(source: Dataset, frame_number: int) -> Dataset:
    """Return the Source Image Sequence item naming the source instance (and its frame)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if common.is_multiframe(source):
        item.ReferencedFrameNumber = frame_number
    item.PurposeOfReferenceCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
    ]
    return item
