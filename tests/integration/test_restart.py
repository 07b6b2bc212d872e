"""Nothing lost, nothing doubled: SIGKILL Orthanc while studies are pending or running, restart it."""

from __future__ import annotations

import pytest

from scripts.orthanc_process import wait_for

from .conftest import running_node
from .studies import thyroid_nm

pytestmark = pytest.mark.integration


def test_sigkill_then_restart_processes_every_study_exactly_once(tmp_path):
    send = tmp_path / "send"
    send.mkdir()
    files = [thyroid_nm(send, f"restart-{i}", seed=300 + i) for i in range(6)]
    with running_node(tmp_path / "node", "restart") as node:
        # 1. Stored but not yet stable when Orthanc dies: stability is lost with the process.
        assert node.storescu([path for path, _ in files[:3]]).returncode == 0
        node.kill()
        node.start()
        # 2. Killed again while the worker is busy with the next batch.
        assert node.storescu([path for path, _ in files[3:]]).returncode == 0
        first = node.study_id(files[3][1])

        def busy() -> None:
            assert node.ai_state(first)["state"] in ("running", "done")

        wait_for(busy, 60, "the worker to start on the second batch")
        node.kill()
        node.start()
        for _, study_uid in files:
            study_id = node.study_id(study_uid)
            state = node.wait_state(study_id, ["done"], timeout=120)
            assert len(state["results"]) == 1, state["results"]
            series = node.json(f"/studies/{study_id}/series")
            assert len(series) == 4, [s["MainDicomTags"].get("SeriesDescription") for s in series]
            assert len(node.json(f"/studies/{study_id}/instances")) == 4
