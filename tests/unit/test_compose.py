"""docker-compose.yml cannot run here (no Docker engine): check its structure instead."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_cpu_and_gpu_services_share_one_definition():
    services = _compose()["services"]
    assert set(services) == {"orthanc-ai", "orthanc-ai-gpu"}
    cpu, gpu = services["orthanc-ai"], services["orthanc-ai-gpu"]
    assert cpu["profiles"] == ["cpu"] and gpu["profiles"] == ["gpu"]
    assert cpu["environment"] == gpu["environment"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["build"]["args"]["ONNXRUNTIME"] == "onnxruntime-gpu"


def test_mounts_and_paths_exist_in_the_repository():
    service = _compose()["services"]["orthanc-ai"]
    for volume in service["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_dir(), source
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert "orthanc_plugin/entry.py" in service["environment"]["ORTHANC__PYTHON_SCRIPT"]
    assert (ROOT / ".env").read_text().strip() == "COMPOSE_PROFILES=cpu"
