"""Models are data: a new ONNX file goes live without a restart; a broken one is refused; results keep provenance."""

from __future__ import annotations

import pytest

from scripts.orthanc_process import wait_for

from .conftest import fast, running_node
from .model_files import copy_shipped, drop_version, served_file
from .studies import thyroid_nm

pytestmark = pytest.mark.integration


def test_new_version_goes_live_and_supersedes_older_results(tmp_path):
    models = copy_shipped(tmp_path / "models")
    with running_node(tmp_path / "node", "model-swap", fast(ModelsDirectory=str(models))) as node:
        send = tmp_path / "send"
        send.mkdir()
        path, uid = thyroid_nm(send, "swap", seed=601)
        assert node.storescu([path]).returncode == 0
        study_id = node.study_id(uid)
        first = node.wait_state(study_id, ["done"])
        segmentation = served_file(models, "thyroid-segmentation")
        (models / "broken-9.9.9.onnx").write_bytes(b"garbage")
        drop_version(segmentation, models / "thyroid-seg-next.onnx", "7.0.0")

        def served() -> dict:
            status = node.json("/ai/status")["models"]
            versions = {m["version"] for m in status["models"] if m["served"]}
            assert "7.0.0" in versions, versions
            return status

        status = wait_for(served, 30, "the dropped model to be served")
        assert [r["file"] for r in status["refused"]] == ["broken-9.9.9.onnx"]

        assert node.post(f"/ai/studies/{study_id}/run").status_code == 202

        state = node.wait_results(study_id, 2)  # the re-run on the new version
        old, new = state["results"]
        assert old["work_key"] == first["results"][0]["work_key"]
        assert old["superseded_by"] == new["work_key"]
        assert "7.0.0" in {m["version"] for m in new["models"]}
        assert len(node.json(f"/studies/{study_id}/series")) == 7  # source + 2 x (SC, SEG, SR)
