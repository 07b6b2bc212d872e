"""Results forwarded to a PACS (dcmtk storescp) as Orthanc jobs; a dead PACS ends in a recorded failure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from scripts.orthanc_process import free_port, wait_for

from .conftest import fast, running_node
from .studies import thyroid_nm

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _rules_with_forwarding(path: Path) -> Path:
    """The default rules, with Tc-99m results sent to PACS and I-123 results to a dead host."""
    rules = json.loads((ROOT / "rules" / "default.json").read_text())
    for rule in rules["rules"]:
        if rule["variant"] == "tc99m":
            rule["forward"] = {"destination": "PACS", "what": "results", "retries": 2}
        if rule["variant"] == "i123":
            rule["forward"] = {"destination": "DOWN", "what": "results", "retries": 1}
    path.write_text(json.dumps(rules))
    return path


@pytest.fixture
def pacs(tmp_path):
    """A storescp receiving into a folder, on a free loopback port."""
    received = tmp_path / "pacs"
    received.mkdir()
    port = free_port()
    process = subprocess.Popen(["storescp", "-aet", "PACS", "-od", str(received), str(port)])
    yield port, received
    process.terminate()
    process.wait(10)


def test_results_reach_the_pacs_and_failures_are_recorded(tmp_path, pacs):
    port, received = pacs
    overrides = {**fast(RulesFile=str(_rules_with_forwarding(tmp_path / "rules.json")), ForwardTimeoutSeconds=30),
                 "DicomModalities": {"PACS": ["PACS", "127.0.0.1", port],
                                     "DOWN": ["DOWN", "127.0.0.1", free_port()]}}
    with running_node(tmp_path / "node", "forwarding", overrides) as node:
        send = tmp_path / "send"
        send.mkdir()
        tc_path, tc_uid = thyroid_nm(send, "forward-tc", seed=501)
        i_path, i_uid = thyroid_nm(send, "forward-i", seed=502, radionuclide="i123")
        assert node.storescu([tc_path, i_path]).returncode == 0
        tc_id, i_id = node.study_id(tc_uid), node.study_id(i_uid)

        def forwarded(study_id: str, wanted: str) -> dict:
            state = node.ai_state(study_id)
            assert state["state"] == "done" and state["results"], state
            outcome = state["results"][0].get("forward", {})
            assert outcome.get("state") == wanted, outcome
            return state

        state = wait_for(lambda: forwarded(tc_id, "done"), 120, "results forwarded to PACS", 0.5)
        expected = {o["sop_instance_uid"] for o in state["results"][0]["outputs"].values()}
        got = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in received.iterdir()}
        assert got == expected

        failed = wait_for(lambda: forwarded(i_id, "failed"), 120, "forward to a dead PACS to fail", 0.5)
        outcome = failed["results"][0]["forward"]
        assert outcome["attempts"] == 2 and outcome["error"]
