"""Unit tests of training/mining.py, annotations.py and imagej_roi.py: tiny inputs, known answers."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from tests.integration import annotated
from training import annotations as ann
from training import imagej_roi as ij
from training import mining, synthetic_nm
from training.mining_report import Report
from training.orthanc_source import pick_frame

SHAPE = (32, 32)


def _reread(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.fixture
def image() -> Dataset:
    """A 32x32 one-frame NM image, PixelSpacing 2 mm, as read back from a file."""
    counts = np.arange(SHAPE[0] * SHAPE[1], dtype=float).reshape(SHAPE) % 50 + 1
    return _reread(synthetic_nm.nm_dataset(counts, pixel_spacing_mm=2.0, patient_id="PID-UNIT-42",
                                           patient_name="Unit^Patient", accession_number="ACC-UNIT-42"))


def _rtstruct(image: Dataset, rois: list[tuple[str, str, list[float], str | None]]) -> Dataset:
    """RT Structure Set with (ROIName, ContourGeometricType, ContourData, referenced SOP UID) rows."""
    rt = Dataset()
    rt.StructureSetROISequence, rt.ROIContourSequence = [], []
    for number, (name, kind, data, ref) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        rt.StructureSetROISequence.append(roi)
        contour = Dataset()
        contour.ContourGeometricType, contour.ContourData = kind, data
        if ref is not None:
            item = Dataset()
            item.ReferencedSOPInstanceUID = ref
            contour.ContourImageSequence = [item]
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, [contour]
        rt.ROIContourSequence.append(item)
    return rt


def _square_mm(x0: float, y0: float, size: float) -> list[float]:
    return [x0, y0, 0, x0 + size, y0, 0, x0 + size, y0 + size, 0, x0, y0 + size, 0]


class TestNamesAndPolygons:
    @pytest.mark.parametrize("name, label", [
        ("Thyroid", 1), ("Left lobe", 1), ("Schilddrüse", 1), ("isthmus", 1), ("Thyroid nodule", 2),
        ("Cold nodule 2", 2), ("nodule froid", 2), ("Knoten links", 2), ("kalter Knoten", 2),
        ("Hot nodule", None), ("Chin marker", None), ("", None)])
    def test_label_for_name(self, name, label):
        assert ann.label_for_name(name)[0] == label

    def test_square_covers_the_pixels_whose_centre_is_inside(self):
        mask = ann.fill_polygon([2, 7, 7, 2], [3, 3, 8, 8], SHAPE)
        assert mask.sum() == 25 and mask[3:8, 2:7].all()

    def test_polygon_is_clipped_to_the_image(self):
        assert ann.fill_polygon([-5, 4, 4, -5], [-5, -5, 2, 2], SHAPE).sum() == 4 * 2

    def test_right_triangle(self):
        # pixel centres (c + .5, r + .5) with c + r < 4 (below the diagonal x + y = 5)
        assert ann.fill_polygon([0, 5, 0], [0, 0, 5], SHAPE).sum() == 10

    def test_oval_matches_imagej(self):
        assert ann.fill_ellipse(0, 0, 4, 4, SHAPE).sum() == 12  # a 4x4 circle without its corners


class TestRtStruct:
    def test_square_contour_in_mm_from_the_top_left_corner(self, image):
        rt = _rtstruct(image, [("Thyroid", "CLOSED_PLANAR", _square_mm(4, 6, 10), image.SOPInstanceUID),
                               ("Cold nodule", "CLOSED_PLANAR", _square_mm(6, 8, 4), image.SOPInstanceUID)])
        mask = ann.rtstruct_to_mask(rt, image).mask
        assert (mask > 0).sum() == 25 and (mask[3:8, 2:7] > 0).all()  # 10 mm / 2 mm = 5 px each way
        assert (mask == 2).sum() == 4 and (mask[4:6, 3:5] == 2).all()

    def test_image_geometry_is_used_when_present(self, image):
        image.ImagePositionPatient, image.ImageOrientationPatient = [10, 20, 0], [1, 0, 0, 0, 1, 0]
        rt = _rtstruct(image, [("Thyroid", "CLOSED_PLANAR", _square_mm(9, 19, 10), None)])
        mask = ann.rtstruct_to_mask(rt, image).mask  # first pixel's centre at (10, 20) mm
        assert mask.sum() == 25 and mask[0:5, 0:5].all()

    def test_without_pixel_spacing_contours_are_pixels(self, image):
        del image.PixelSpacing
        result = ann.rtstruct_to_mask(_rtstruct(image, [("Thyroid", "CLOSED_PLANAR", _square_mm(1, 1, 3), None)]),
                                      image)
        assert result.mask.sum() == 9 and "ContourData read in pixels" in result.notes[0]

    def test_contours_of_another_image_and_points_are_left_out_with_reasons(self, image):
        rt = _rtstruct(image, [("Thyroid", "CLOSED_PLANAR", _square_mm(4, 6, 10), "1.2.3.4.5"),
                               ("Thyroid", "POINT", [4, 6, 0], image.SOPInstanceUID),
                               ("Thyroid", "CLOSED_PLANAR", [4, 6, 0, 8, 6, 0, 8], None),
                               ("Chin marker", "CLOSED_PLANAR", _square_mm(0, 0, 4), None)])
        with pytest.raises(ann.ConversionError, match="no thyroid or cold-nodule region") as error:
            ann.rtstruct_to_mask(rt, image)
        for reason in ("drawn on another image or frame", "unsupported contour type(s) ['POINT']",
                       "ROI 3 'Thyroid': 1 contour(s) with malformed ContourData",
                       "'Chin marker' skipped: the name says neither"):
            assert reason in str(error.value)

    def test_nodules_without_thyroid_are_refused(self, image):
        rt = _rtstruct(image, [("Cold nodule", "CLOSED_PLANAR", _square_mm(6, 8, 4), None)])
        with pytest.raises(ann.ConversionError, match="only cold-nodule regions"):
            ann.rtstruct_to_mask(rt, image)


class TestSeg:
    @pytest.fixture
    def truth(self) -> SimpleNamespace:
        lobes, nodules = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
        lobes[4:20, 6:14], nodules[8:11, 8:11] = 1, 1
        return SimpleNamespace(lobe_mask=lobes, nodule_mask=nodules)

    def test_segments_become_labels(self, image, truth):
        seg = _reread(annotated.seg_for(image, truth))
        mask = ann.seg_to_mask(seg, image).mask
        assert (mask > 0).sum() == 16 * 8 and (mask == 2).sum() == 9

    def test_algorithm_results_are_not_annotations(self, image, truth):
        seg = annotated.seg_for(image, truth, automatic=True)
        with pytest.raises(ann.ConversionError, match=r"made by an algorithm \(AUTOMATIC\)"):
            ann.seg_to_mask(seg, image)

    def test_size_mismatch(self, image, truth):
        seg = annotated.seg_for(image, truth)
        image.Rows = 64
        with pytest.raises(ann.ConversionError, match="mask size mismatch: SEG 32x32, image 64x32"):
            ann.seg_to_mask(seg, image)

    def test_seg_of_another_frame(self, truth):
        two = _reread(synthetic_nm.nm_dataset(np.ones((2, *SHAPE))))
        seg = _reread(annotated.seg_for(two, truth))
        assert (ann.seg_to_mask(seg, two, frame_number=1).mask > 0).sum() == 16 * 8
        with pytest.raises(ann.ConversionError, match="SEG has no pixels for frame 2 of this image"):
            ann.seg_to_mask(seg, two, frame_number=2)


class TestImageJ:
    @pytest.mark.parametrize("roi", [
        ij.ImageJRoi("rect", top=2, left=3, bottom=5, right=7, name="Thyroid"),
        ij.ImageJRoi("oval", top=0, left=0, bottom=4, right=4, name="nodule 1", position=1),
        ij.ImageJRoi("polygon", 0, 0, 5, 5, (0.0, 5.0, 0.0), (0.0, 0.0, 5.0), name="Lobe"),
        ij.ImageJRoi("freehand", 1, 1, 4, 4, (1.25, 3.5, 1.0), (1.0, 1.0, 3.75)),
        ij.ImageJRoi("traced", 1, 2, 3, 4, (2.0, 4.0, 4.0, 2.0), (1.0, 1.0, 3.0, 3.0), name="Knoten é")])
    def test_round_trip(self, roi):
        assert ij.decode(ij.encode(roi)) == roi

    @pytest.mark.parametrize("roi, pixels", [
        (ij.ImageJRoi("rect", top=2, left=3, bottom=5, right=7), 12),
        (ij.ImageJRoi("oval", top=0, left=0, bottom=4, right=4), 12),
        (ij.ImageJRoi("polygon", 0, 0, 5, 5, (0.0, 5.0, 0.0), (0.0, 0.0, 5.0)), 10)])
    def test_masks(self, roi, pixels):
        result = ann.imagej_rois_to_mask([("thyroid", ij.decode(ij.encode(roi)))], SHAPE)
        assert result.mask.sum() == pixels and not result.notes

    def test_header_layout_is_imagej(self):
        data = ij.encode(ij.ImageJRoi("rect", top=2, left=3, bottom=5, right=7))
        assert data[:4] == b"Iout" and data[6] == 1 and struct.unpack(">hhhh", data[8:16]) == (2, 3, 5, 7)

    def test_zip_and_names(self, tmp_path):
        path = tmp_path / "RoiSet.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("0001-0002.roi", ij.encode(ij.ImageJRoi("rect", 0, 0, 4, 4)))
            archive.writestr("0003-0004.roi", ij.encode(ij.ImageJRoi("rect", 1, 1, 2, 2, name="nodule")))
            archive.writestr("readme.txt", "not a roi")
        rois = ij.read_rois(path)
        assert [(name, roi.name) for name, roi in rois] == [("0001-0002", ""), ("0003-0004", "nodule")]
        # the unnamed ROI's file name says nothing: it is left out, and then nothing is thyroid
        with pytest.raises(ann.ConversionError, match="'0001-0002' skipped: the name says neither"):
            ann.imagej_rois_to_mask(rois, SHAPE)

    def test_unsupported_types_and_slices_are_reported(self):
        line = bytearray(ij.encode(ij.ImageJRoi("polygon", 0, 0, 5, 5, (0.0, 5.0, 0.0), (0.0, 0.0, 5.0))))
        line[6] = 3
        rois = [("line", ij.decode(bytes(line))), ("thyroid", ij.ImageJRoi("rect", 0, 0, 4, 4)),
                ("thyroid 2", ij.ImageJRoi("rect", 0, 0, 4, 4, position=2))]
        notes = ann.imagej_rois_to_mask(rois, SHAPE, frame_number=1).notes
        assert "unsupported ImageJ ROI type 'line'" in notes[0] and "drawn on slice 2" in notes[1]

    def test_not_a_roi(self):
        with pytest.raises(ij.RoiFormatError, match="expected magic b'Iout'"):
            ij.decode(b"\x89PNG" + bytes(80))


class TestPng:
    def test_grey_palette_and_colour(self, tmp_path):
        gland = np.zeros(SHAPE, np.uint8)
        gland[2:6, 2:6] = 255
        Image.fromarray(gland).save(tmp_path / "thyroid.png")
        rgb = np.zeros((*SHAPE, 3), np.uint8)
        rgb[3, 3] = (0, 0, 9)
        Image.fromarray(rgb).save(tmp_path / "nodule.png")
        mask = ann.png_to_mask([tmp_path / "thyroid.png"], [tmp_path / "nodule.png"], SHAPE).mask
        assert (mask > 0).sum() == 16 and mask[3, 3] == 2 and (mask == 2).sum() == 1

    def test_size_mismatch(self, tmp_path):
        Image.fromarray(np.ones((16, 20), np.uint8)).save(tmp_path / "t.png")
        with pytest.raises(ann.ConversionError, match=r"mask size mismatch: t.png is 16x20 .* image 32x32"):
            ann.png_to_mask([tmp_path / "t.png"], [], SHAPE)


class TestMining:
    def test_pseudonym_is_stable_keyed_and_opaque(self):
        study, sop = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
        first = mining.pseudonym("salt", study, sop)
        assert first == mining.pseudonym("salt", study, sop) and len(first) == 16 and int(first, 16) >= 0
        assert first not in (mining.pseudonym("pepper", study, sop), mining.pseudonym("salt", study, sop + "1"))
        assert not any(part in first for part in (study, sop, "3680043", "salt"))

    def test_scrubber(self, image):
        scrub = mining.scrubber([image])
        text = scrub(f"{image.PatientID} {image.PatientName} Unit {image.SOPInstanceUID} {image.AccessionNumber}")
        assert text == "[redacted] [redacted] [redacted] [uid] [redacted]"

    def test_photopeak_anterior_frame_is_picked(self):
        frames = np.stack([np.full(SHAPE, v) for v in (1, 2, 3, 4)])  # windows x detectors
        ds = _reread(synthetic_nm.nm_dataset(frames, detectors_views=("posterior", "anterior"),
                                             energy_windows=[("SCATTER", 110, 125), ("PHOTOPEAK", 126, 154)]))
        pixels, frame = pick_frame(ds)
        assert frame == 4 and pixels.dtype == np.float32 and (pixels == 4).all()

    def test_undecodable_pixels(self, image):
        image.PixelData = image.PixelData[:100]
        with pytest.raises(ann.ConversionError, match="undecodable pixels"):
            pick_frame(image)

    def test_study_without_server(self, image, tmp_path):
        """A SEG of another image, an unannotated image, then a PNG folder found by AccessionNumber."""
        stray = _reread(annotated.seg_for(image, SimpleNamespace(lobe_mask=np.ones(SHAPE, np.uint8),
                                                                 nodule_mask=np.zeros(SHAPE, np.uint8))))
        stray.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"
        for item in stray.SourceImageSequence:
            item.ReferencedSOPInstanceUID = "1.2.3.4.5"
        for frame in stray.PerFrameFunctionalGroupsSequence:
            frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"
        report, out = Report(), tmp_path / "out"
        mining.mine_study([image, stray], salt="s", out=out, report=report)
        assert [(p.what, p.reason) for p in report.problems] == [
            ("seg", "the annotation references no NM image of this study (another image?)"),
            ("image", "no annotation found (no SEG or RTSTRUCT referencing it, no ROI folder)")]
        folder = tmp_path / "roi" / "ACC-UNIT-42"
        folder.mkdir(parents=True)
        Image.fromarray(np.full(SHAPE, 255, np.uint8)).save(folder / "gland.png")
        mining.mine_study([image], salt="s", out=out, report=report, roi_dir=tmp_path / "roi")
        pid = mining.pseudonym("s", image.StudyInstanceUID, image.SOPInstanceUID)
        meta = json.loads((out / pid / "meta.json").read_text())
        assert meta["source_format"] == "png" and meta["matrix"] == [32, 32] and meta["label_pixels"]["thyroid"] == 1024
        assert np.load(out / pid / "image.npy").dtype == np.float32
        assert np.asarray(Image.open(out / pid / "mask.png")).max() == 1
        report.write(out)
        assert json.loads((out / "report.json").read_text())["counts"] == {"pairs": 1, "not_converted": 2}
        assert "| png |" in (out / "report.md").read_text()

    def test_old_gateway_secondary_capture_by_study_folder(self, tmp_path):
        sc = _reread(synthetic_nm.secondary_capture_nm(np.full(SHAPE, 7, np.uint16)))
        folder = tmp_path / "roi" / sc.StudyInstanceUID
        folder.mkdir(parents=True)
        (folder / "RoiSet.zip").write_bytes(b"")  # an empty file is not a zip: reported, PNGs not tried
        report = Report()
        mining.mine_study([sc], salt="s", out=tmp_path / "out", report=report, roi_dir=tmp_path / "roi")
        assert report.problems[0].what == "roi-folder" and "not a readable zip" in report.problems[0].reason
        (folder / "RoiSet.zip").unlink()
        ij_roi = ij.ImageJRoi("oval", 0, 0, 8, 8, name="Thyroid")
        (folder / "gland.roi").write_bytes(ij.encode(ij_roi))
        mining.mine_study([sc], salt="s", out=tmp_path / "out", report=report, roi_dir=tmp_path / "roi")
        meta = json.loads((tmp_path / "out" / report.pairs[0].id / "meta.json").read_text())
        assert (meta["image_kind"], meta["source_format"], meta["label_pixels"]["thyroid"]) == ("SC", "imagej", 52)
