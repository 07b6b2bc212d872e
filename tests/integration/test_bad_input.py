"""Bad or unusual input gets a clear state, never crashes the worker, and nothing is lost."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from training import synthetic_nm

from .studies import jpeg2000_nm, thyroid_nm, truncated_pixels

pytestmark = pytest.mark.integration


def _public(name: str) -> Callable:
    def build(folder: Path) -> Path:
        return Path(get_testdata_file(name))
    return build


def _thyroid(**options) -> Callable:
    def build(folder: Path) -> Path:
        return thyroid_nm(folder, options.pop("name"), **options)[0]
    return build


def _zero(folder: Path) -> Path:
    return thyroid_nm(folder, "zero", seed=11, pixels=np.zeros((128, 128), np.float32))[0]


def _truncated(folder: Path) -> Path:
    source = thyroid_nm(folder, "to-truncate", seed=12)[0]
    return truncated_pixels(source, folder / "truncated.dcm")


def _sc_gateway(folder: Path) -> Path:
    from training import phantoms

    image = phantoms.generate(13).image
    grey = (255 * np.clip(image / np.percentile(image, 99.5), 0, 1)).astype(np.uint8)
    return synthetic_nm.write(synthetic_nm.secondary_capture_nm(grey, patient_id="SYN-sc"), folder / "sc.dcm")


# name -> (builder, expected state, expected text in reason/error, expected variant)
CASES = {
    "ct": (_public("CT_small.dcm"), "skipped", "no rule matched: CT series", None),
    "mr": (_public("MR_small.dcm"), "skipped", "no rule matched: MR series", None),
    "nm-whole-body-j2k": (_public("JPEG2000.dcm"), "skipped", "no rule matched", None),
    "nm-whole-body-jpeg": (_public("JPEG-lossy.dcm"), "skipped", "no rule matched", None),
    "all-zero": (_zero, "failed", "no counts", None),
    "truncated-pixels": (_truncated, "failed", "cannot decode", None),
    "rle": (_thyroid(name="rle", seed=14, transfer_syntax=RLELossless), "done", None, "tc99m"),
    "jpeg2000": (lambda folder: jpeg2000_nm(folder, "j2k", seed=20), "done", None, "tc99m"),
    "two-frames": (_thyroid(name="two", seed=15, frames="two-windows"), "done", None, "tc99m"),
    "matrix-1024": (_thyroid(name="big", seed=16, upscale=8), "done", None, "tc99m"),
    "no-pixel-spacing": (_thyroid(name="nospacing", seed=17, pixel_spacing_mm=None), "done", None, "tc99m"),
    "i123": (_thyroid(name="i123", seed=18, radionuclide="i123"), "done", None, "i123"),
    "posterior": (_thyroid(name="posterior", seed=19, view="posterior"), "done", None, "tc99m"),
    "sc-gateway": (_sc_gateway, "done", None, "sc-gateway"),
}


@pytest.fixture(scope="module")
def sent(node, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Send every case (C-STORE, the file's own transfer syntax); {case: (study id, file)}."""
    folder = tmp_path_factory.mktemp("bad")
    files = {name: builder(folder) for name, (builder, *_rest) in CASES.items()}
    statuses = node.cstore(files.values())
    assert statuses == [0] * len(files), dict(zip(files, statuses))
    return {name: (node.study_id(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID), path)
            for name, path in files.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_gets_a_clear_state(node, sent, case):
    _, expected_state, expected_text, expected_variant = CASES[case]
    study_id, path = sent[case]
    state = node.wait_state(study_id, ["done", "failed", "skipped"])
    assert state["state"] == expected_state, state
    if expected_text:
        assert expected_text in (state.get("reason") or state.get("error") or ""), state
    if expected_variant:
        assert state["results"][0]["variant"] == expected_variant
    # The input is never lost: the source instance is still there.
    sop_uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    assert any(a["Type"] == "Instance" for a in node.post("/tools/lookup", sop_uid).json())


def test_two_frames_reads_the_photopeak_frame(node, sent):
    state = node.wait_state(sent["two-frames"][0], ["done"])
    assert state["results"][0]["findings"]["frame_number"] == 2


def test_missing_pixel_spacing_reports_pixels_only(node, sent):
    findings = node.wait_state(sent["no-pixel-spacing"][0], ["done"])["results"][0]["findings"]
    assert "right_lobe_area" not in findings["measurements"]
    assert any("PixelSpacing" in w for w in findings["warnings"])


def test_posterior_view_puts_the_right_lobe_on_the_image_right(node, sent):
    state = node.wait_state(sent["posterior"][0], ["done"])
    seg_id = state["results"][0]["outputs"]["seg"]["instance_id"]
    seg = hd.seg.segread(io.BytesIO(node.get(f"/instances/{seg_id}/file").content))
    number = next(s.SegmentNumber for s in seg.SegmentSequence if s.SegmentLabel == "Thyroid right lobe")
    source = pydicom.dcmread(sent["posterior"][1])
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[number],
        ignore_spatial_locations=True, assert_missing_frames_are_empty=True)[0, :, :, 0]
    assert np.nonzero(mask)[1].mean() > source.Columns / 2


def test_corrupt_file_is_refused_by_orthanc_and_the_node_goes_on(node, study_dir):
    before = len(node.json("/instances"))
    response = node.post("/instances", b"DICM" + b"\x00" * 300)
    assert 400 <= response.status_code < 500, response.text  # Orthanc refuses it: nothing to lose
    assert len(node.json("/instances")) == before
    path, study_uid = thyroid_nm(study_dir, "after-corrupt", seed=21)
    assert node.storescu([path]).returncode == 0
    assert node.wait_state(node.study_id(study_uid), ["done", "failed"])["state"] == "done"
