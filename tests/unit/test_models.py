"""The model registry: contract checks, self-test, highest version served, hot swap, refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest

from orthanc_plugin.errors import ModelError
from orthanc_plugin.models import ModelRegistry, parse_spec

from .onnx_factory import metadata, write_model

def _registry(folder) -> ModelRegistry:
    registry = ModelRegistry(folder, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    registry.refresh()
    return registry


def test_highest_version_per_task_is_served(tmp_path):
    write_model(tmp_path / "a.onnx", version="1.0.0")
    write_model(tmp_path / "b.onnx", version="1.10.0")
    write_model(tmp_path / "c.onnx", version="1.2.0")
    served = _registry(tmp_path).snapshot()["thyroid-segmentation"]
    assert served.spec.version == "1.10.0"  # numeric, not string, ordering
    assert served.provider == "CPUExecutionProvider"
    assert len(served.sha256) == 64


def test_a_broken_new_file_is_refused_and_the_old_version_keeps_serving(tmp_path):
    write_model(tmp_path / "good.onnx", version="1.0.0")
    registry = _registry(tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    props = metadata("thyroid-segmentation", "9.0.0", labels=["background"])
    del props["normalisation"]
    write_model(tmp_path / "nometa.onnx", props=props)
    assert registry.refresh()
    assert registry.snapshot()["thyroid-segmentation"].spec.version == "1.0.0"
    refused = {r["file"]: r["reason"] for r in registry.status()["refused"]}
    assert "onnxruntime cannot load it" in refused["broken.onnx"]
    assert "lack normalisation" in refused["nometa.onnx"]


def test_dropping_a_new_version_swaps_without_touching_in_flight_work(tmp_path):
    write_model(tmp_path / "v1.onnx", version="1.0.0")
    registry = _registry(tmp_path)
    in_flight = registry.snapshot()
    write_model(tmp_path / "v2.onnx", version="2.0.0")
    assert registry.refresh()
    assert registry.snapshot()["thyroid-segmentation"].spec.version == "2.0.0"
    assert in_flight["thyroid-segmentation"].spec.version == "1.0.0"
    os.remove(tmp_path / "v2.onnx")
    registry.refresh()
    assert registry.snapshot()["thyroid-segmentation"].spec.version == "1.0.0"


def test_unchanged_folder_is_not_reloaded(tmp_path):
    write_model(tmp_path / "v1.onnx")
    registry = _registry(tmp_path)
    assert registry.refresh() is False


def test_predict_resamples_and_returns_probabilities(tmp_path):
    write_model(tmp_path / "m.onnx")
    model = _registry(tmp_path).snapshot()["thyroid-segmentation"]
    frame = np.random.default_rng(0).poisson(20, (128, 128)).astype(np.float32)
    probabilities = model.predict(frame)
    assert probabilities.shape == (3, 32, 32)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("key, value, message", [
    ("version", "1.0", "is not MAJOR.MINOR.PATCH"),
    ("input_size", "[128]", "input_size must be"),
    ("labels", "[]", "labels must be"),
    ("output_activation", "relu", "output_activation must be"),
    ("normalisation", '{"method": "zscore"}', "normalisation must be"),
    ("thresholds", "not json", "is not JSON"),
])
def test_bad_metadata_is_refused_with_the_key_named(key, value, message):
    props = metadata("thyroid-segmentation", "1.0.0", labels=["background", "a", "b"])
    props[key] = value
    with pytest.raises(ModelError, match=message):
        parse_spec(props, source="x.onnx")


@pytest.mark.parametrize("kind, task, channels", [("segmentation", "thyroid-segmentation", 3),
                                                  ("nodules", "cold-nodule-detection", 1)])
def test_a_model_exported_by_training_is_served_by_the_registry(tmp_path, kind, task, channels):
    # The two sides of the models/README.md contract, tied together: training/export.py writes,
    # orthanc_plugin/models.py reads.
    import torch

    from training import export
    from training.models import UNet

    torch.manual_seed(0)
    network = UNet(1, channels, base=2, levels=1)
    proto = export.to_onnx(network, export.build_metadata(kind, "0.0.1", {"probability": 0.5}, {}, "test"))
    (tmp_path / "exported.onnx").write_bytes(proto.SerializeToString())
    registry = _registry(tmp_path)
    assert registry.status()["refused"] == []
    model = registry.snapshot()[task]
    assert model.spec.version == "0.0.1" and len(model.spec.labels) == channels
    assert model.predict(np.ones((128, 128), np.float32)).shape == (channels, 128, 128)


def test_shadow_models_are_loaded_but_never_served(tmp_path):
    write_model(tmp_path / "live.onnx", version="1.0.0")
    props = metadata("thyroid-segmentation", "2.0.0", labels=["background", "a", "b"], size=32)
    props["shadow"] = "true"
    write_model(tmp_path / "candidate.onnx", props=props)
    write_model(tmp_path / "configured.onnx", version="3.0.0")
    registry = ModelRegistry(tmp_path, ["CPUExecutionProvider"], shadow_files=["configured.onnx"])
    registry.refresh()
    assert registry.snapshot()["thyroid-segmentation"].spec.version == "1.0.0"
    assert sorted(m.path.name for m in registry.shadows()["thyroid-segmentation"]) == [
        "candidate.onnx", "configured.onnx"]


def test_promote_then_rollback(tmp_path):
    for version in ("1.0.0", "1.1.0"):
        write_model(tmp_path / f"v{version}.onnx", version=version)
    props = metadata("thyroid-segmentation", "2.0.0", labels=["background", "a", "b"], size=32)
    props["shadow"] = "true"
    write_model(tmp_path / "v2.0.0.onnx", props=props)
    registry = _registry(tmp_path)
    assert registry.promote("v2.0.0.onnx") == {"task": "thyroid-segmentation",
                                                "previous": "v1.1.0.onnx", "served": "v2.0.0.onnx"}
    assert registry.snapshot()["thyroid-segmentation"].spec.version == "2.0.0"
    assert "thyroid-segmentation" not in registry.shadows()
    assert registry.rollback("thyroid-segmentation")["served"] == "v1.1.0.onnx"
    assert registry.rollback("thyroid-segmentation")["served"] == "v1.0.0.onnx"
    with pytest.raises(ModelError, match="no version older than 1.0.0"):
        registry.rollback("thyroid-segmentation")
    with pytest.raises(ModelError, match="no loaded model file 'nope.onnx'"):
        registry.promote("nope.onnx")


def test_a_chosen_version_can_be_asked_for(tmp_path):
    for version in ("1.0.0", "1.1.0"):
        write_model(tmp_path / f"v{version}.onnx", version=version)
    registry = _registry(tmp_path)
    assert registry.snapshot({"thyroid-segmentation": "1.0.0"})["thyroid-segmentation"].spec.version == "1.0.0"
    with pytest.raises(ModelError, match="has version '9.9.9'"):
        registry.snapshot({"thyroid-segmentation": "9.9.9"})
