"""Operations on a live node: shadow runs, promote and rollback, chosen versions, audit, metrics."""

from __future__ import annotations


import pytest

from scripts.orthanc_process import wait_for

from .conftest import fast, running_node
from .model_files import copy_shipped, drop_version, served_file
from .studies import thyroid_nm

pytestmark = pytest.mark.integration
SEG = "thyroid-segmentation"


def test_shadow_promote_rollback_audit_and_metrics(tmp_path):
    models = copy_shipped(tmp_path / "models")
    # The served segmentation model dropped again as 2.0.0, marked shadow in its metadata.
    candidate = drop_version(served_file(models, SEG), models / "thyroid-seg-candidate.onnx", "2.0.0",
                             shadow=True)
    with running_node(tmp_path / "node", "operations", fast(ModelsDirectory=str(models))) as node:
        send = tmp_path / "send"
        send.mkdir()
        path, uid = thyroid_nm(send, "ops", seed=701)
        assert node.storescu([path]).returncode == 0
        study_id = node.study_id(uid)
        state = node.wait_state(study_id, ["done"])

        # Shadow: compared on the study, invisible in DICOM.
        (comparison,) = state["results"][0]["shadow"]
        assert comparison["file"] == candidate and comparison["gland_dice"] == 1.0  # same weights
        assert len(node.json(f"/studies/{study_id}/series")) == 4
        shadow = node.json("/ai/shadow")
        assert shadow["comparisons"][0]["studies"] == 1
        served = [m for m in node.json("/ai/status")["models"]["models"] if m["served"]]
        assert {m["task"] for m in served} == {SEG, "cold-nodule-detection"}
        assert all(m["version"] != "2.0.0" for m in served)

        # Promote, re-run: a new result series on 2.0.0, the older one marked superseded.
        promoted = node.post("/ai/models/promote", '{"file": "%s"}' % candidate)
        assert promoted.status_code == 200 and promoted.json()["served"] == candidate
        assert node.post(f"/ai/studies/{study_id}/run").status_code == 202

        state = node.wait_results(study_id, 2)  # the re-run on the promoted version
        assert state["results"][0]["superseded_by"] == state["results"][1]["work_key"]
        assert {m["version"] for m in state["results"][1]["models"] if m["task"] == SEG} == {"2.0.0"}

        # Prometheus metrics through Orthanc's own endpoint (counters restart with the node).
        def metrics() -> str:
            text = node.get("/tools/metrics-prometheus").text
            assert "ai_processing_seconds_thyroid_count" in text, text[-500:]
            return text

        text = wait_for(metrics, 20, "our metrics in Orthanc's endpoint")
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("ai_")}
        assert values["ai_model_version_thyroid_segmentation"] == 2_000_000  # the promoted 2.0.0
        assert values["ai_queue_depth"] >= 0 and "ai_studies_done" in values

        # Rollback, and the choice survives a restart.
        rolled = node.post("/ai/models/rollback", '{"task": "%s"}' % SEG).json()
        assert rolled["served"].startswith("thyroid-seg-unet")
        node.stop()
        node.start()
        status = node.json("/ai/status")["models"]
        assert status["pins"] == {SEG: rolled["served"]}

        # A chosen version: unknown ones are refused with the reason.
        refused = node.post(f"/ai/studies/{study_id}/run", '{"models": {"%s": "9.9.9"}}' % SEG)
        assert refused.status_code == 409 and "9.9.9" in refused.json()["error"]
        assert node.post(f"/ai/studies/{study_id}/run", "not json").status_code == 400

        # Audit trail: what triggered each step, which rule, which models.
        events = node.json(f"/ai/studies/{study_id}/audit")["audit"]
        names = [e["event"] for e in events]
        assert names[:3] == ["queued", "started", "done"]
        assert events[1]["rules"] == ["thyroid-tc99m"] and events[1]["by"] == "change-log"
        assert {"event": "rerun-requested", "by": "rest:orthanc"}.items() <= next(
            e for e in events if e["event"] == "rerun-requested").items()

