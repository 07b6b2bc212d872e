"""A real Orthanc with the real Python plugin, on free loopback ports, for the integration tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scripts.orthanc_process import OrthancNode

pytestmark = pytest.mark.integration

# Short delays so a study is stable (and picked up) about a second after its last image.
FAST = {"StableAge": 1, "AiNode": {"PollSeconds": 0.5, "StableAgeSeconds": 2}}


def _require_tools() -> None:
    for tool in ("/usr/sbin/Orthanc", "storescu"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make test`, which installs it (scripts/setup.sh)")


def fast(**ai_node: object) -> dict:
    """FAST with some AiNode keys changed (e.g. ModelsDirectory, RulesFile)."""
    return {**FAST, "AiNode": {**FAST["AiNode"], **ai_node}}


@contextmanager
def running_node(folder: Path, log_name: str, overrides: dict = FAST, **options) -> Iterator[OrthancNode]:
    """Start a node, yield it, stop it and keep its log in test-artifacts/orthanc-<log_name>.log."""
    _require_tools()
    orthanc = OrthancNode(folder, overrides=overrides, **options).start()
    try:
        yield orthanc
    finally:
        orthanc.stop()
        _keep_log(orthanc, log_name)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory):
    """One node shared by the tests that do not restart it."""
    with running_node(tmp_path_factory.mktemp("node"), "node") as orthanc:
        yield orthanc


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """Folder for the DICOM files a test sends."""
    folder = tmp_path / "send"
    folder.mkdir()
    return folder


def _keep_log(orthanc: OrthancNode, name: str) -> None:
    """Copy the Orthanc log next to the test artefacts, for post-mortems in CI."""
    target = Path(__file__).resolve().parents[2] / "test-artifacts"
    target.mkdir(exist_ok=True)
    if orthanc.log_path.exists():
        shutil.copy(orthanc.log_path, target / f"orthanc-{name}.log")
