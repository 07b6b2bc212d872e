"""A thyroid study in by C-STORE, annotated SC + SEG + SR out, in the same study of a real Orthanc."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests

from orthanc_plugin import DISCLAIMER, MANUFACTURER

from .studies import thyroid_nm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def done_study(node, tmp_path_factory):
    """One Tc-99m anterior thyroid study, sent with storescu and processed."""
    folder = tmp_path_factory.mktemp("e2e")
    path, study_uid = thyroid_nm(folder, "e2e", seed=4242)
    sent = node.storescu([path])
    assert sent.returncode == 0, sent.stderr
    study_id = node.study_id(study_uid)
    state = node.wait_state(study_id, ["done", "failed"])
    assert state["state"] == "done", state
    return study_id, pydicom.dcmread(path), state


def _file(node, state: dict, kind: str) -> bytes:
    instance_id = state["results"][0]["outputs"][kind]["instance_id"]
    return node.get(f"/instances/{instance_id}/file").content


def _output(node, state: dict, kind: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(_file(node, state, kind)))


def test_results_are_new_series_of_the_same_study(node, done_study):
    study_id, source, state = done_study
    assert len(state["results"]) == 1
    series = node.json(f"/studies/{study_id}/series")
    assert len(series) == 4  # the source + SC, SEG, SR
    for kind in ("sc", "seg", "sr"):
        ds = _output(node, state, kind)
        assert ds.PatientID == source.PatientID
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.Manufacturer == MANUFACTURER


def test_every_output_names_its_models(node, done_study):
    _, _, state = done_study
    served = {m["sha256"] for m in node.json("/ai/status")["models"]["models"] if m["served"]}
    assert len(served) == 2
    for kind in ("sc", "seg", "sr"):
        ds = _output(node, state, kind)
        text = str(ds.ContributingEquipmentSequence)
        for digest in served:
            assert digest in text, f"{kind} lacks model {digest[:12]}"


def test_overlay_is_viewable_in_orthanc_explorer(node, done_study):
    _, source, state = done_study
    sc = _output(node, state, "sc")
    assert sc.SamplesPerPixel == 3 and sc.PhotometricInterpretation == "RGB"
    instance_id = state["results"][0]["outputs"]["sc"]["instance_id"]
    preview = node.get(f"/instances/{instance_id}/preview")
    assert preview.status_code == 200 and preview.headers["Content-Type"] == "image/png"
    assert len(preview.content) > 10_000  # a real picture, not a blank


def test_seg_lobes_follow_the_view_orientation(node, done_study):
    _, source, state = done_study
    seg = hd.seg.segread(io.BytesIO(_file(node, state, "seg")))
    labels = {item.SegmentLabel: item.SegmentNumber for item in seg.SegmentSequence}
    assert {"Thyroid right lobe", "Thyroid left lobe"} <= set(labels)
    referenced = {ref.ReferencedSOPInstanceUID
                  for item in seg.ReferencedSeriesSequence for ref in item.ReferencedInstanceSequence}
    assert referenced == {source.SOPInstanceUID}
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[labels["Thyroid right lobe"]],
        ignore_spatial_locations=True, assert_missing_frames_are_empty=True)[0, :, :, 0]
    columns = np.nonzero(pixels)[1]
    # Anterior view: the patient's right lobe is on the image's left.
    assert columns.mean() < source.Columns / 2


def test_sr_holds_the_measurements(node, done_study):
    _, source, state = done_study
    data = _file(node, state, "sr")
    sr = hd.sr.srread(io.BytesIO(data))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert DISCLAIMER.encode() in data
    assert source.SOPInstanceUID.encode() in data
    findings = state["results"][0]["findings"]
    assert {"right_count_share", "left_count_share", "thyroid_to_background_ratio"} <= set(findings["measurements"])
    shares = findings["measurements"]
    assert abs(shares["right_count_share"]["value"] + shares["left_count_share"]["value"] - 100) < 0.1


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("kind", ["sc", "seg", "sr"])
def test_outputs_pass_dciodvfy(node, done_study, kind, tmp_path: Path):
    _, _, state = done_study
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(_file(node, state, kind))
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_rest_requires_orthanc_authentication(node):
    assert requests.get(f"{node.url}/ai/status", timeout=10).status_code == 401
    status = node.json("/ai/status")
    assert status["models"]["providers"][-1] == "CPUExecutionProvider"
    assert {m["task"] for m in status["models"]["models"]} == {"thyroid-segmentation", "cold-nodule-detection"}


def test_explain_names_the_rule(node, done_study):
    study_id, _, _ = done_study
    explained = node.json(f"/ai/studies/{study_id}/explain")
    text = str(explained)
    assert "thyroid-tc99m" in text


def test_rerun_and_stable_again_add_nothing(node, done_study):
    study_id, _, state = done_study
    before = node.json(f"/studies/{study_id}/instances")
    response = node.post(f"/ai/studies/{study_id}/run")
    assert response.status_code == 202
    time.sleep(3)  # the rerun and any STABLE_STUDY after it have had time to run
    after_state = node.wait_state(study_id, ["done"])
    assert len(after_state["results"]) == len(state["results"])
    assert len(node.json(f"/studies/{study_id}/instances")) == len(before)


def test_unknown_study_is_404(node):
    assert node.get("/ai/studies/00000000-00000000-00000000-00000000-00000000").status_code == 404
