"""Training-set export from a real Orthanc: one annotated study per format, one without annotation."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pydicom
import pytest
from PIL import Image

from training import mining

from . import annotated
from .conftest import running_node

pytestmark = pytest.mark.integration

SALT = "mining-test-salt"
FORMATS = ("seg", "rtstruct", "imagej", "png")


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 1.0 if total == 0 else 2 * float((a & b).sum()) / total


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A real Orthanc holding the five studies, and the ROI folder of the two file-based formats."""
    root = tmp_path_factory.mktemp("mining")
    # The AI plugin stays idle (no /ai/ routes): this is any department's Orthanc.
    with running_node(root / "node", "mining", {"AiNode": {"Enabled": False}}, ready_path="/system") as node:
        studies = {}
        for seed, kind in enumerate((*FORMATS, "none"), start=32):  # seeds with cold nodules today
            image, phantom = annotated.nm_image(kind, seed)
            node.upload(_bytes(image))
            if kind == "seg":
                node.upload(_bytes(annotated.seg_for(image, phantom)))
            elif kind == "rtstruct":
                node.upload(_bytes(annotated.rtstruct_for(image, phantom)))
            elif kind == "imagej":  # folder named by StudyInstanceUID
                annotated.imagej_zip(root / "roi" / image.StudyInstanceUID / "RoiSet.zip", phantom)
            elif kind == "png":  # folder named by AccessionNumber
                annotated.png_masks(root / "roi" / image.AccessionNumber, phantom)
            studies[kind] = (image, phantom)
        yield node, studies, root


def test_export_pairs_report_and_pseudonyms(loaded, caplog, capsys):
    node, studies, root = loaded
    out = root / "out"
    with caplog.at_level(logging.INFO):
        status = mining.main(["--url", node.url, "--user", "orthanc", "--password", "orthanc", "--out", str(out),
                              "--query", '{"Modality": "NM", "StudyDescription": "*thyr*"}',
                              "--roi-dir", str(root / "roi"), "--salt", SALT])
    printed = capsys.readouterr().out
    assert status == 0 and "4 pair(s) written" in printed
    report = json.loads((out / "report.json").read_text())

    assert sorted(p["format"] for p in report["pairs"]) == sorted(FORMATS)
    for kind in FORMATS:
        image, phantom = studies[kind]
        pid = mining.pseudonym(SALT, image.StudyInstanceUID, image.SOPInstanceUID)
        assert {"id": pid, "format": kind}.items() <= next(p for p in report["pairs"] if p["id"] == pid).items()
        mask = np.asarray(Image.open(out / pid / "mask.png"))
        truth = annotated.truth(phantom)
        assert _dice(mask > 0, truth > 0) >= 0.95, kind
        assert _dice(mask == 2, truth == 2) >= 0.9, kind
        assert np.array_equal(np.load(out / pid / "image.npy"), phantom.image)
        meta = json.loads((out / pid / "meta.json").read_text())
        assert meta["source_format"] == kind and meta["matrix"] == [128, 128]
        assert meta["labels"] == {"0": "background", "1": "thyroid", "2": "cold nodule"}

    image, _ = studies["none"]
    none_id = mining.pseudonym(SALT, image.StudyInstanceUID, image.SOPInstanceUID)
    problem = next(p for p in report["not_converted"] if p["id"] == none_id)
    assert problem["what"] == "image" and problem["reason"].startswith("no annotation found")
    assert len(report["not_converted"]) == 1, report["not_converted"]
    rt_pair = next(p for p in report["pairs"] if p["format"] == "rtstruct")
    assert any("'Chin marker' skipped" in note for note in rt_pair["notes"])

    texts = [printed, caplog.text, (out / "report.json").read_text(), (out / "report.md").read_text()]
    texts += [str(path.relative_to(out)) for path in out.rglob("*")]
    texts += [path.read_text() for path in out.rglob("meta.json")]
    for image, _ in studies.values():
        for secret in (image.PatientID, str(image.PatientName), image.StudyInstanceUID, image.SOPInstanceUID,
                       image.AccessionNumber):
            assert not any(secret in text for text in texts), f"{secret} leaked"
    assert not any(SALT in text for text in texts)


def test_study_list_and_unknown_study(loaded, tmp_path):
    node, studies, _ = loaded
    image, _ = studies["seg"]
    mining.main(["--url", node.url, "--out", str(tmp_path), "--study", image.StudyInstanceUID, "1.2.3.999"])
    report = json.loads((tmp_path / "report.json").read_text())
    salt = (tmp_path / ".salt").read_text().strip()
    assert [p["id"] for p in report["pairs"]] == [mining.pseudonym(salt, image.StudyInstanceUID, image.SOPInstanceUID)]
    assert report["not_converted"] == [{"what": "study", "id": mining.pseudonym(salt, "1.2.3.999"),
                                        "reason": "StudyInstanceUID not found on the server", "image": None}]
