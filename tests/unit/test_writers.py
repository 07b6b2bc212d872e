"""Writers (SC, SEG, SR) and the synthetic NM inputs they are tested on.

Each output is built from a synthetic NM (one frame, or two frames with the findings on frame 2)
or an old-gateway Secondary Capture, written with pydicom's strict validation, read back, and
checked for identity, references, provenance, content, determinism and dciodvfy errors.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from orthanc_plugin import DISCLAIMER, MANUFACTURER, SOFTWARE_VERSION
from orthanc_plugin.errors import WriterError
from orthanc_plugin.findings import MEASUREMENT_NAMES, Findings, Lobe, Measurement, ModelInfo, Nodule
from orthanc_plugin.uids import OutputUids, output_uids, work_key
from orthanc_plugin.writers import _common, _overlay, write_sc, write_seg, write_sr
from training.synthetic_nm import nm_dataset, secondary_capture_nm, write

SIZE = 32
SPACING = 2.0
SEG_MODEL = ModelInfo("thyroid-segmentation", "thyroid-seg-unet", "1.0.0", "a1" * 32)
DET_MODEL = ModelInfo("cold-nodule-detection", "cold-nodule-det", "0.3.1", "b2" * 32)
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dciodvfy (dicom3tools) is not installed")


# ----------------------------------------------------------------------------- inputs

def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def make_findings(*, frame_number: int = 1, calibrated: bool = True, nodules: bool = True,
                  sides: tuple[str, ...] = ("right", "left"), view: str = "anterior",
                  spacing: float | None = SPACING) -> Findings:
    """Two lobes (patient's right on the image left in the anterior view), two cold nodules."""
    right_col, left_col = (10, 22) if view == "anterior" else (22, 10)
    masks = {"right": _ellipse(16, right_col, 9, 4), "left": _ellipse(16, left_col, 8, 3.5)}
    n1, n2 = _ellipse(20, right_col, 2, 2), _ellipse(12, left_col, 1.5, 1.5)
    image = np.full((SIZE, SIZE), 6.0, np.float32)
    image[masks["right"]], image[masks["left"]] = 150, 130
    image[n1], image[n2] = 70, 80
    shares = {"right": 54.2, "left": 45.8}
    lobes, measurements = [], [Measurement("thyroid_to_background_ratio", 11.4, "{ratio}")]
    for side in sides:
        m = masks[side]
        length = float(np.ptp(np.nonzero(m)[0]) + 1)
        area_mm2 = float(m.sum()) * spacing**2 if spacing else None
        lobes.append(Lobe(side, m, float(image[m].sum()), shares[side], int(m.sum()), length,
                          area_mm2, length * spacing if spacing else None))
        measurements += [
            Measurement(f"{side}_count_share", shares[side], "%"),
            Measurement(f"{side}_lobe_area", area_mm2 or float(m.sum()), "mm2" if spacing else "px"),
            Measurement(f"{side}_lobe_length", length * (spacing or 1), "mm" if spacing else "px"),
        ]
    found = ()
    if nodules:
        found = (
            Nodule(1, "right", "lower", n1, (20.0, right_col), 4.5,
                   4.5 * spacing if spacing else None, 0.52, 0.91),
            Nodule(2, "left", "upper", n2, (12.0, left_col), 3.4,
                   3.4 * spacing if spacing else None, 0.61, 0.47),
        )
    return Findings(
        pipeline="thyroid", variant="tc99m", frame_number=frame_number, image=image,
        pixel_spacing_mm=(spacing, spacing) if spacing else None, calibrated=calibrated,
        view=view, lobes=tuple(lobes), nodules=found, measurements=tuple(measurements),
        models=(SEG_MODEL, DET_MODEL),
    )


def make_source(kind: str, findings: Findings) -> Dataset:
    """``nm1``: one frame; ``nm2``: scatter window, then the photopeak frame that was read (2);
    ``sc``: old-gateway Secondary Capture."""
    counts = findings.image
    if kind == "nm1":
        return nm_dataset(counts, view=findings.view)
    if kind == "nm2":
        windows = (("SCATTER", 108.0, 126.0), ("PHOTOPEAK", 126.0, 154.0))
        return nm_dataset(np.stack([counts * 0.2, counts]), view=findings.view,
                          energy_windows=windows)
    return secondary_capture_nm(counts.astype(np.uint16))


CASES = {  # name: (source kind, frame number, calibrated)
    "nm1-calibrated": ("nm1", 1, True),
    "nm2-frame2-uncalibrated": ("nm2", 2, False),
    "sc-gateway-uncalibrated": ("sc", 1, False),
}
WRITERS: dict[str, tuple[Callable[[Dataset, Findings, OutputUids], Dataset], str]] = {
    "sc": (write_sc, "sc"), "seg": (write_seg, "seg"), "sr": (write_sr, "sr"),
}


@pytest.fixture
def strict_writing() -> Iterator[None]:
    """Make pydicom raise on invalid values while writing; restore the setting afterwards."""
    settings = pydicom.config.settings
    previous = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.RAISE
    yield
    settings.writing_validation_mode = previous


def to_bytes(ds: Dataset) -> bytes:
    """Encode ``ds`` as a Part 10 file."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def uids_for(source: Dataset, findings: Findings, kind: str) -> OutputUids:
    key = work_key(source.SOPInstanceUID, findings.pipeline, findings.variant,
                   [f"{m.name}-{m.version}" for m in findings.models])
    return output_uids(key, kind)  # type: ignore[arg-type]


def build(writer: str, case: str, **overrides: object) -> tuple[Dataset, Findings, Dataset, OutputUids]:
    """Return (source, findings, output, uids) of ``writer`` on ``case``."""
    kind, frame, calibrated = CASES[case]
    findings = make_findings(frame_number=frame, calibrated=calibrated, **overrides)  # type: ignore[arg-type]
    source = make_source(kind, findings)
    function, output_kind = WRITERS[writer]
    uids = uids_for(source, findings, output_kind)
    return source, findings, function(source, findings, uids), uids


def dciodvfy_errors(path: Path) -> list[str]:
    """Return the lines of dciodvfy's report that contain "Error"."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]


def walk(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    """Yield every SR content item under ``items``, depth first."""
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


# ----------------------------------------------------------------------------- synthetic NM

class TestSyntheticNM:
    def test_single_frame_is_a_multi_frame_nm_with_the_camera_attributes(self) -> None:
        ds = nm_dataset(np.ones((2, 3, 4)) * 7)
        assert ds.SOPClassUID == pydicom.uid.NuclearMedicineImageStorage
        assert (ds.Modality, ds.BodyPartExamined, ds.NumberOfFrames) == ("NM", "THYROID", 2)
        assert [int(t) for t in ds.FrameIncrementPointer] == [0x00540010, 0x00540020]
        assert list(ds.EnergyWindowVector) == [1, 2] and list(ds.DetectorVector) == [1, 1]
        limits = [(float(w.EnergyWindowRangeSequence[0].EnergyWindowLowerLimit),
                   float(w.EnergyWindowRangeSequence[0].EnergyWindowUpperLimit))
                  for w in ds.EnergyWindowInformationSequence]
        assert limits[0] == (126.0, 154.0) and limits[1][1] <= 126.0
        nuclide = ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0]
        assert (nuclide.CodeValue, nuclide.CodingSchemeDesignator) == ("C-163A8", "SRT")
        detector = ds.DetectorInformationSequence[0]
        assert detector.CollimatorType == "PINH"
        assert detector.ViewCodeSequence[0].CodeMeaning == "Anterior projection"
        assert list(ds.PatientOrientation) == ["L", "F"]
        assert ds.pixel_array.shape == (2, 3, 4) and int(ds.pixel_array.max()) == 7

    def test_i123_posterior_and_dual_detector(self) -> None:
        ds = nm_dataset(np.zeros((8, 8)), radionuclide="i123", view="posterior")
        window = ds.EnergyWindowInformationSequence[0].EnergyWindowRangeSequence[0]
        assert (float(window.EnergyWindowLowerLimit), float(window.EnergyWindowUpperLimit)) == (143, 175)
        assert ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0].CodeValue == "C-114A4"
        assert list(ds.PatientOrientation) == ["R", "F"]
        dual = nm_dataset(np.zeros((2, 8, 8)), detectors_views=("anterior", "posterior"))
        assert list(dual.DetectorVector) == [1, 2] and list(dual.EnergyWindowVector) == [1, 1]
        views = [d.ViewCodeSequence[0].CodeValue for d in dual.DetectorInformationSequence]
        assert views == ["399321004", "399001007"]
        with pytest.raises(ValueError, match="3 frame"):
            nm_dataset(np.zeros((3, 8, 8)))

    def test_same_arguments_same_bytes(self) -> None:
        counts = np.arange(64).reshape(8, 8)
        assert to_bytes(nm_dataset(counts)) == to_bytes(nm_dataset(counts))
        assert nm_dataset(counts).SOPInstanceUID != nm_dataset(counts + 1).SOPInstanceUID

    def test_gateway_sc_has_no_nm_attributes(self) -> None:
        ds = secondary_capture_nm(np.ones((8, 8), np.uint8))
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and ds.Modality == "NM"
        assert "NumberOfFrames" not in ds and "EnergyWindowInformationSequence" not in ds

    @needs_dciodvfy
    @pytest.mark.parametrize("name,build_input", [
        ("nm-1frame", lambda: nm_dataset(np.ones((16, 16)))),
        ("nm-2frame-i123", lambda: nm_dataset(np.ones((2, 16, 16)), radionuclide="i123")),
        ("nm-dual-no-spacing", lambda: nm_dataset(np.ones((2, 16, 16)), radionuclide=None,
                                                  detectors_views=("anterior", "posterior"),
                                                  pixel_spacing_mm=None)),
        ("nm-rle", lambda: nm_dataset(np.ones((16, 16)), transfer_syntax=RLELossless)),
        ("sc-16bit", lambda: secondary_capture_nm(np.ones((16, 16), np.uint16))),
        ("sc-8bit-rle", lambda: secondary_capture_nm(np.ones((16, 16), np.uint8),
                                                     transfer_syntax=RLELossless)),
    ])
    def test_dciodvfy_finds_no_error(self, tmp_path: Path, name: str,
                                     build_input: Callable[[], Dataset]) -> None:
        path = write(build_input(), tmp_path / f"{name}.dcm")
        assert dciodvfy_errors(path) == []


# ----------------------------------------------------------------------------- all writers

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("writer", WRITERS)
class TestEveryOutput:
    def test_same_patient_and_study_new_series_provenance(self, strict_writing: None,
                                                          writer: str, case: str) -> None:
        source, findings, output, uids = build(writer, case)
        back = pydicom.dcmread(io.BytesIO(to_bytes(output)))
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                        "StudyID", "StudyDescription"):
            assert back[keyword].value == source[keyword].value, keyword
        assert back.SeriesInstanceUID == uids.series_instance_uid != source.SeriesInstanceUID
        assert back.SOPInstanceUID == uids.sop_instance_uid
        assert int(back.SeriesNumber) == uids.series_number
        assert back.Manufacturer == MANUFACTURER
        assert SOFTWARE_VERSION in back.SoftwareVersions
        assert back.SeriesDescription.startswith("AI ")
        equipment = {(e.ManufacturerModelName, str(e.get("SoftwareVersions"))): e
                     for e in back.ContributingEquipmentSequence if "ManufacturerModelName" in e}
        for model in findings.models:
            item = equipment[(model.name, model.version)]
            assert item.DeviceSerialNumber == model.sha256
            assert model.sha256 in item.ContributionDescription
            assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"

    def test_same_inputs_same_bytes_and_source_untouched(self, writer: str, case: str) -> None:
        source, findings, first, uids = build(writer, case)
        before = to_bytes(source)
        function, kind = WRITERS[writer]
        second = function(source, findings, uids_for(source, findings, kind))
        assert to_bytes(first) == to_bytes(second)
        assert to_bytes(source) == before
        other = replace(findings, models=(SEG_MODEL, replace(DET_MODEL, version="0.4.0")))
        assert uids_for(source, other, kind).series_instance_uid != uids.series_instance_uid

    @needs_dciodvfy
    def test_dciodvfy_finds_no_error(self, tmp_path: Path, writer: str, case: str) -> None:
        source, _, output, _ = build(writer, case)
        write(source, tmp_path / "source.dcm")
        path = write(output, tmp_path / f"{writer}.dcm")
        assert dciodvfy_errors(path) == []


class TestOddInputs:
    @pytest.mark.parametrize("writer", WRITERS)
    def test_latin1_patient_name_survives(self, strict_writing: None, writer: str) -> None:
        findings = make_findings()
        source = nm_dataset(findings.image, patient_name="Müller^Jürgen")
        function, kind = WRITERS[writer]
        back = pydicom.dcmread(io.BytesIO(to_bytes(function(source, findings,
                                                            uids_for(source, findings, kind)))))
        assert str(back.PatientName) == "Müller^Jürgen"
        assert back.SpecificCharacterSet == "ISO_IR 100"

    @needs_dciodvfy
    @pytest.mark.parametrize("writer", WRITERS)
    def test_isthmus_nodule(self, tmp_path: Path, writer: str) -> None:
        findings = make_findings()
        isthmus = replace(findings.nodules[0], lobe="isthmus", pole="middle")
        findings = replace(findings, nodules=(isthmus,))
        source = make_source("nm1", findings)
        function, kind = WRITERS[writer]
        output = function(source, findings, uids_for(source, findings, kind))
        if writer == "seg":
            assert output.SegmentSequence[2].AnatomicRegionSequence[0].CodeValue == "40867004"
        if writer == "sr":
            sites = [i.ConceptCodeSequence[0].CodeValue for i in walk(output.ContentSequence)
                     if i.ConceptNameCodeSequence[0].CodeMeaning == "Finding Site"]
            assert "40867004" in sites
        assert dciodvfy_errors(write(output, tmp_path / f"{writer}.dcm")) == []

    @pytest.mark.parametrize("writer", ["sc", "sr"])
    def test_no_lobe_and_no_nodule_still_reports(self, writer: str) -> None:
        findings = make_findings(nodules=False, sides=())
        source = make_source("nm1", findings)
        function, kind = WRITERS[writer]
        output = function(source, findings, uids_for(source, findings, kind))
        assert output.SOPInstanceUID == uids_for(source, findings, kind).sop_instance_uid
        text = "\n".join(line.text for line in _overlay._legend(findings))
        assert "Right lobe: not found" in text and "none found" in text


class TestInputChecks:
    @pytest.mark.parametrize("writer", WRITERS)
    @pytest.mark.parametrize("change,message", [
        ({"frame_number": 3}, "frame_number 3 is outside"),
        ({"models": ()}, "findings.models is empty"),
        ({"image": np.zeros((4, 4), np.float32)}, "findings.image has shape"),
        ({"measurements": (Measurement("thyroid_uptake", 1.0, "%"),)}, "thyroid_uptake"),
    ])
    def test_inconsistent_inputs_raise_writer_error(self, writer: str, change: dict[str, object],
                                                    message: str) -> None:
        findings = make_findings(frame_number=2)
        source = make_source("nm2", findings)
        function, kind = WRITERS[writer]
        with pytest.raises(WriterError, match=message):
            function(source, replace(findings, **change), uids_for(source, findings, kind))

    def test_empty_mask_is_refused(self) -> None:
        findings = make_findings()
        lobe = replace(findings.lobes[0], mask=np.zeros((SIZE, SIZE), bool))
        broken = replace(findings, lobes=(lobe, findings.lobes[1]))
        with pytest.raises(WriterError, match="mask of right lobe is empty"):
            write_seg(make_source("nm1", findings), broken, output_uids("k", "seg"))

    def test_every_measurement_name_has_a_code(self) -> None:
        assert set(_common.MEASUREMENT_CODES) == set(MEASUREMENT_NAMES)
        assert _common.unit_code("px").value == "{pixels}"
        with pytest.raises(WriterError, match="'cm'"):
            _common.unit_code("cm")

    def test_mask_outline_follows_pixel_edges(self) -> None:
        outline = _common.mask_outline(np.array([[0, 1, 0], [0, 1, 1], [0, 0, 0]], bool))
        assert outline.tolist() == [[1, 0], [2, 0], [2, 1], [3, 1], [3, 2], [1, 2], [1, 0]]
        small_and_big = np.zeros((6, 6), bool)
        small_and_big[0, 0] = True
        small_and_big[2:5, 2:5] = True
        assert _common.mask_outline(small_and_big)[:, 0].min() == 2


# ----------------------------------------------------------------------------- SC

class TestSecondaryCapture:
    def test_rgb_overlay_with_references_and_burnt_in_disclaimer(self) -> None:
        source, findings, sc, _ = build("sc", "nm2-frame2-uncalibrated")
        assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert (sc.PhotometricInterpretation, sc.SamplesPerPixel) == ("RGB", 3)
        assert sc.BurnedInAnnotation == "YES" and DISCLAIMER in sc.ImageComments
        ref = sc.SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert int(ref.ReferencedFrameNumber) == 2
        pixels = sc.pixel_array
        assert 500 <= pixels.shape[0] - _overlay.BANNER_HEIGHT <= 700
        banner = pixels[: _overlay.BANNER_HEIGHT]
        red = np.all(banner == _overlay.BANNER_RED, axis=-1).mean()
        text = np.all(banner == _overlay.WARN, axis=-1).sum()
        assert red > 0.7 and text > 200

    @pytest.mark.parametrize("view", ["anterior", "posterior"])
    def test_r_and_l_labels_sit_on_the_patients_sides(self, view: str) -> None:
        findings = make_findings(view=view)
        pixels = _overlay.render(findings)[_overlay.BANNER_HEIGHT:, : _overlay.IMAGE_HEIGHT]
        scale = _overlay.IMAGE_HEIGHT / SIZE
        for lobe in findings.lobes:
            cols = np.nonzero(lobe.mask)[1]
            left, right = cols.min() * scale - 4, (cols.max() + 1) * scale + 4
            x = np.nonzero(np.all(pixels == _overlay.LOBE_COLOURS[lobe.side], axis=-1))[1]
            image_left, image_right = int((x < left).sum()), int((x > right).sum())
            label_on_image_left = (lobe.side == "right") == (view == "anterior")
            assert (image_left > 30, image_right > 30) == (label_on_image_left, not label_on_image_left)
        assert np.all(pixels == _overlay.NODULE_COLOUR, axis=-1).sum() > 50

    def test_legend_changes_with_calibration_and_nodules(self) -> None:
        base = _overlay.render(make_findings())
        assert not np.array_equal(base, _overlay.render(make_findings(calibrated=False)))
        assert not np.array_equal(base, _overlay.render(make_findings(nodules=False)))

    def test_legend_lines(self) -> None:
        text = "\n".join(line.text for line in _overlay._legend(make_findings(calibrated=False)))
        assert "54.2 % of counts" in text and "Thyroid-to-background ratio:  11.4" in text
        assert "UNCALIBRATED" in text and "(uncal.)" in text
        assert "1.  right lobe, lower pole, 9 mm (uncal.)" in text
        assert "thyroid-seg-unet 1.0.0" in text and "cold-nodule-det 0.3.1" in text


# ----------------------------------------------------------------------------- SEG

def read_seg(seg: Dataset) -> hd.seg.Segmentation:
    with pydicom.config.strict_reading():
        return hd.seg.segread(io.BytesIO(to_bytes(seg)))


class TestSegmentation:
    @pytest.mark.parametrize("case", CASES)
    def test_segments_codes_algorithms_and_references(self, strict_writing: None, case: str) -> None:
        source, findings, seg, _ = build("seg", case)
        back = read_seg(seg)
        labels = [s.SegmentLabel for s in back.SegmentSequence]
        assert labels == ["Thyroid right lobe", "Thyroid left lobe", "Cold nodule 1", "Cold nodule 2"]
        for segment, laterality in zip(back.SegmentSequence[:2], ("24028007", "7771000"), strict=True):
            prop = segment.SegmentedPropertyTypeCodeSequence[0]
            assert prop.CodeValue == "69748006"
            assert prop.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == laterality
            assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
            algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
            assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("thyroid-seg-unet", "1.0.0")
            assert SEG_MODEL.sha256 in algorithm.AlgorithmParameters
        for segment in back.SegmentSequence[2:]:
            assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"
            assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
            assert segment.SegmentAlgorithmType == "AUTOMATIC"
            assert segment.SegmentAlgorithmName == "cold-nodule-det"
        assert back.ContentDescription == DISCLAIMER and DISCLAIMER in back.ImageComments
        assert list(back.PatientOrientation) == ["L", "F"]
        assert back.get_source_image_uids() == [
            (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)]
        multiframe = CASES[case][0] != "sc"
        for frame in back.PerFrameFunctionalGroupsSequence:
            ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
            assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
            assert ref.get("ReferencedFrameNumber") == (findings.frame_number if multiframe else None)

    def test_masks_round_trip(self) -> None:
        _, findings, seg, _ = build("seg", "nm2-frame2-uncalibrated")
        back = read_seg(seg)
        expected = {1: findings.lobes[0].mask, 2: findings.lobes[1].mask,
                    3: findings.nodules[0].mask, 4: findings.nodules[1].mask}
        pixels = back.pixel_array
        for i, frame in enumerate(back.PerFrameFunctionalGroupsSequence):
            number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
            assert np.array_equal(pixels[i].astype(bool), expected[number])
        assert len(back.PerFrameFunctionalGroupsSequence) == 4

    def test_no_nodules_only_lobes_and_missing_lobe_skipped(self) -> None:
        _, _, seg, _ = build("seg", "nm1-calibrated", nodules=False)
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Thyroid right lobe", "Thyroid left lobe"]
        _, _, seg, _ = build("seg", "nm1-calibrated", sides=("left",))
        assert [s.SegmentLabel for s in seg.SegmentSequence] == [
            "Thyroid left lobe", "Cold nodule 1", "Cold nodule 2"]
        assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]

    def test_nothing_to_segment_raises(self) -> None:
        with pytest.raises(WriterError, match="no segment to write"):
            build("seg", "nm1-calibrated", nodules=False, sides=())

    def test_source_without_pixel_spacing(self) -> None:
        findings = make_findings(spacing=None, calibrated=False)
        source = nm_dataset(findings.image, pixel_spacing_mm=None)
        seg = write_seg(source, findings, output_uids("no-spacing", "seg"))
        assert len(read_seg(seg).SegmentSequence) == 4
        assert "PixelMeasuresSequence" not in seg.SharedFunctionalGroupsSequence[0]

    @needs_dciodvfy
    def test_source_without_pixel_spacing_passes_dciodvfy(self, tmp_path: Path) -> None:
        findings = make_findings(spacing=None, calibrated=False)
        source = nm_dataset(findings.image, pixel_spacing_mm=None)
        seg = write_seg(source, findings, output_uids("no-spacing", "seg"))
        assert dciodvfy_errors(write(seg, tmp_path / "seg.dcm")) == []


# ----------------------------------------------------------------------------- SR

def read_sr(sr: Dataset) -> hd.sr.Comprehensive3DSR:
    return hd.sr.srread(io.BytesIO(to_bytes(sr)))


class TestStructuredReport:
    @pytest.mark.parametrize("case", CASES)
    def test_groups_regions_and_references(self, strict_writing: None, case: str) -> None:
        source, findings, sr, _ = build("sr", case)
        back = read_sr(sr)
        assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
        assert back.ConceptNameCodeSequence[0].CodeValue == "126000"
        evidence = back.CurrentRequestedProcedureEvidenceSequence[0]
        instance = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
        groups = back.content.get_planar_roi_measurement_groups()
        assert [g.tracking_identifier for g in groups] == [
            "Thyroid right lobe", "Thyroid left lobe", "Cold nodule 1", "Cold nodule 2"]
        multiframe = CASES[case][0] != "sc"
        for group in groups:
            assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
            assert np.array_equal(group.roi.value[0], group.roi.value[-1])
            ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
            assert ref.get("ReferencedFrameNumber") == (findings.frame_number if multiframe else None)
        right, left = groups[0], groups[1]
        assert right.finding_sites[0].laterality.value == "24028007"
        assert left.finding_sites[0].laterality.value == "7771000"
        gland = back.content.get_image_measurement_groups()[0]
        images = [i for i in walk(gland) if i.ValueType == "IMAGE"]
        assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
            source.SOPInstanceUID]
        assert images[0].ReferencedSOPSequence[0].get("ReferencedFrameNumber") == (
            findings.frame_number if multiframe else None)
        library = [i for i in walk(back.ContentSequence)
                   if i.ConceptNameCodeSequence[0].CodeMeaning == "Image Library"]
        assert len(library) == 1

    def test_measurements_units_and_qualitative_evaluations(self) -> None:
        _, findings, sr, _ = build("sr", "nm1-calibrated")
        groups = read_sr(sr).content.get_planar_roi_measurement_groups()
        right = {m.name.meaning: (m.value, m.unit.value, m.method) for m in groups[0].get_measurements()}
        assert right["Share of thyroid counts"][:2] == (54.2, "%")
        assert right["Area"][:2] == (findings.lobes[0].area_mm2, "mm2") and right["Area"][2] is None
        assert right["Length"][1] == "mm"
        outline = _common.mask_outline(findings.nodules[1].mask)
        assert groups[3].roi.value.tolist() == outline.tolist()  # pixel-edge outline of the mask
        nodule = {m.name.meaning: (m.value, m.unit.value) for m in groups[2].get_measurements()}
        assert nodule["Diameter"] == (9.0, "mm")
        assert nodule["Nodule-to-parenchyma count ratio"] == (0.52, "{ratio}")
        assert nodule["Detector confidence"] == (0.91, "1")
        evaluations = {q.name.meaning: q.value.meaning for q in groups[2].get_qualitative_evaluations()}
        assert evaluations["Scintigraphic nodule type"] == "Cold"
        assert evaluations["Thyroid lobe pole"] == "Lower pole"
        assert evaluations["Size calibration"] == "Calibrated"
        gland = read_sr(sr).content.get_image_measurement_groups()[0]
        ratio = {m.name.meaning: (m.value, m.unit.value) for m in gland.get_measurements()}
        assert ratio == {"Thyroid-to-background count ratio": (11.4, "{ratio}")}

    def test_uncalibrated_sizes_are_flagged_and_pixels_used_without_spacing(self) -> None:
        _, _, sr, _ = build("sr", "sc-gateway-uncalibrated")
        groups = read_sr(sr).content.get_planar_roi_measurement_groups()
        area = next(m for m in groups[0].get_measurements() if m.name.meaning == "Area")
        assert area.method.value == "UNCALIBRATED"
        findings = make_findings(spacing=None, calibrated=False)
        sr = write_sr(make_source("nm1", findings), findings, output_uids("px", "sr"))
        groups = read_sr(sr).content.get_planar_roi_measurement_groups()
        units = {m.name.meaning: m.unit.value for g in groups for m in g.get_measurements()}
        assert units["Area"] == units["Length"] == units["Diameter"] == "{pixels}"

    def test_lobe_fields_stand_in_for_missing_measurements_and_nan_is_left_out(self) -> None:
        findings = make_findings(spacing=None, calibrated=False)
        nodule = replace(findings.nodules[0], nodule_to_parenchyma_ratio=float("nan"))
        findings = replace(findings, nodules=(nodule,), measurements=tuple(
            m for m in findings.measurements if m.name.endswith(("share", "ratio"))))
        sr = write_sr(make_source("nm1", findings), findings, output_uids("nan", "sr"))
        groups = read_sr(sr).content.get_planar_roi_measurement_groups()
        right = {m.name.meaning: (m.value, m.unit.value) for m in groups[0].get_measurements()}
        assert right["Area"] == (findings.lobes[0].area_px, "{pixels}")
        assert right["Length"] == (findings.lobes[0].length_px, "{pixels}")
        names = [m.name.meaning for m in groups[2].get_measurements()]
        assert names == ["Diameter", "Detector confidence"]
        text = "\n".join(line.text for line in _overlay._legend(findings))
        assert "nodule/parenchyma n/a" in text and "Sizes in pixels" in text
        assert f"area {findings.lobes[0].area_px} px" in text

    def test_disclaimer_calibration_flag_and_model_provenance_as_text(self) -> None:
        _, findings, sr, _ = build("sr", "nm2-frame2-uncalibrated")
        back = read_sr(sr)
        items = list(walk(back.ContentSequence))
        texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
        assert DISCLAIMER in texts
        for model in findings.models:
            assert any(model.name in t and model.version in t and model.sha256 in t for t in texts)
        flags = [i.ConceptCodeSequence[0].CodeValue for i in items if i.ValueType == "CODE"
                 and i.ConceptNameCodeSequence[0].CodeValue == "SIZECAL"]
        assert flags and set(flags) == {"UNCALIBRATED"}
        algorithms = [i.TextValue for i in items if i.ValueType == "TEXT"
                      and i.ConceptNameCodeSequence[0].CodeMeaning == "Algorithm Name"]
        assert set(algorithms) == {"thyroid-seg-unet", "cold-nodule-det"}
        schemes = [s.CodingSchemeDesignator for s in back.CodingSchemeIdentificationSequence]
        assert "99ORTHANCAI" in schemes
        observer = [i.TextValue for i in items if i.ValueType == "TEXT"
                    and i.ConceptNameCodeSequence[0].CodeValue == "121013"]
        assert observer == [f"{MANUFACTURER} thyroid pipeline"]
