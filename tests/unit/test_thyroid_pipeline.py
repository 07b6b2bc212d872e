"""The thyroid pipeline: options, laterality from the header, measurements; quality with the shipped models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orthanc_plugin.errors import ConfigError, ModelError
from orthanc_plugin.models import ModelRegistry
from orthanc_plugin.pipelines import thyroid
from training import phantoms, synthetic_nm

from .onnx_factory import write_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped():
    """The models in models/ (trained by training/): the pipeline must work with them as shipped."""
    registry = ModelRegistry(ROOT / "models", ["CPUExecutionProvider"])
    registry.refresh()
    models = registry.snapshot()
    assert set(thyroid.TASKS) <= set(models), f"models/ lacks {set(thyroid.TASKS) - set(models)}"
    return models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_model(folder / "seg.onnx", size=128)
    write_model(folder / "nod.onnx", task="cold-nodule-detection", labels=["cold_nodule"], size=128)
    registry = ModelRegistry(folder, ["CPUExecutionProvider"])
    registry.refresh()
    return registry.snapshot()


def _dataset(seed: int, **options):
    phantom = phantoms.generate(seed, **{k: options.pop(k) for k in ("pattern", "matrix") if k in options})
    options.setdefault("pixel_spacing_mm", 2.0)
    return phantom, synthetic_nm.nm_dataset(phantom.image, **options)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.parametrize("options, message", [
    ({"bogus": 1}, "unknown option 'bogus'"),
    ({"nodule_probability": "high"}, "expects a number"),
    ({"nodule_probability": 1.5}, "must be in \\(0, 1\\)"),
])
def test_bad_options_are_refused(tiny, options, message):
    _, ds = _dataset(1)
    with pytest.raises(ConfigError, match=message):
        thyroid.run(ds, tiny, options)


def test_a_missing_model_is_a_model_error(tiny):
    _, ds = _dataset(1)
    with pytest.raises(ModelError, match="cold-nodule-detection"):
        thyroid.run(ds, {"thyroid-segmentation": tiny["thyroid-segmentation"]}, {})


def test_calibration_replaces_stored_spacing(tiny):
    _, ds = _dataset(2, pixel_spacing_mm=3.0)
    stored = thyroid.run(ds, tiny, {})
    calibrated = thyroid.run(ds, tiny, {}, calibration_mm_per_pixel=0.5)
    assert not stored.calibrated and calibrated.calibrated
    assert calibrated.pixel_spacing_mm == (0.5, 0.5)
    for before, after in zip(stored.lobes, calibrated.lobes):
        assert after.area_mm2 == pytest.approx(before.area_mm2 * (0.5 / 3.0) ** 2)


def test_view_in_the_header_decides_laterality(tiny):
    _, anterior = _dataset(3, view="anterior")
    _, posterior = _dataset(3, view="posterior")
    front, back = thyroid.run(anterior, tiny, {}), thyroid.run(posterior, tiny, {})
    assert front.view == "anterior" and back.view == "posterior"
    for lobe in front.lobes:
        mirror = back.lobe("left" if lobe.side == "right" else "right")
        assert mirror is not None and np.array_equal(mirror.mask, lobe.mask)


@pytest.mark.parametrize("seed, pattern", [(20_000_001, "normal"), (20_000_002, "graves"),
                                           (20_000_003, "multinodular"), (20_000_004, "thyroiditis")])
def test_shipped_models_find_the_lobes_on_the_patient_sides(shipped, seed, pattern):
    phantom, ds = _dataset(seed, pattern=pattern)
    findings = thyroid.run(ds, shipped, {})
    # Anterior view: the lobe on the image's left (phantom label 1) is the patient's right.
    for side, label in (("right", 1), ("left", 2)):
        lobe = findings.lobe(side)
        assert lobe is not None, f"{side} lobe missing"
        assert _dice(lobe.mask, phantom.lobe_mask == label) > 0.75
    share = findings.measurement("right_count_share").value + findings.measurement("left_count_share").value
    assert share == pytest.approx(100.0, abs=0.01)


def test_shipped_models_work_on_256_matrices(shipped):
    phantom, ds = _dataset(20_000_010, matrix=256, pattern="normal")
    findings = thyroid.run(ds, shipped, {})
    gland = np.zeros(phantom.lobe_mask.shape, bool)
    for lobe in findings.lobes:
        gland |= lobe.mask
    assert gland.shape == (256, 256)
    assert _dice(gland, phantom.lobe_mask > 0) > 0.8
