"""Fast tests of training/: phantoms, pre/post-processing, metrics and the ONNX export contract."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnxruntime = pytest.importorskip("onnxruntime")

from training import evaluate as ev  # noqa: E402
from training import export  # noqa: E402
from training.data import augment, normalise, preprocess, resample_image, resample_labels  # noqa: E402
from training.models import UNet  # noqa: E402
from training.phantoms import PATTERNS, Phantom, generate  # noqa: E402


def test_phantom_is_deterministic_per_seed():
    a, b, c = generate(3), generate(3), generate(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.lobe_mask, b.lobe_mask)
    assert a.nodules == b.nodules and a.pattern == b.pattern
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_shapes_and_labels(pattern):
    ph = generate(11, pattern=pattern)
    assert ph.image.shape == ph.lobe_mask.shape == ph.nodule_mask.shape == (128, 128)
    assert ph.image.dtype == np.float32 and ph.lobe_mask.dtype == np.uint8 and ph.nodule_mask.dtype == np.uint8
    assert set(np.unique(ph.lobe_mask)) == {0, 1, 2}
    assert set(np.unique(ph.nodule_mask)) <= {0, 1}
    cols = np.nonzero(ph.lobe_mask == 1)[1], np.nonzero(ph.lobe_mask == 2)[1]
    assert cols[0].max() < cols[1].min()  # label 1 is the image's left lobe
    assert not (ph.nodule_mask & (ph.lobe_mask == 0)).any()
    assert 0.75 <= ph.stored_pixel_spacing_mm <= 3.3 and ph.total_counts == int(ph.image.sum())
    assert ph.pattern == pattern


def test_thyroiditis_mask_is_the_true_gland():
    ph = generate(5, pattern="thyroiditis")
    area_mm2 = (ph.lobe_mask > 0).sum() * ph.mm_per_px**2
    assert 800 < area_mm2 < 6000


def test_hot_nodules_absent_from_nodule_mask():
    ph = generate(2, pattern="toxic_adenoma")
    hot = [n for n in ph.nodules if n.kind == "hot"]
    assert hot and not any(n.kind == "cold" for n in ph.nodules)
    assert ph.nodule_mask.sum() == 0
    for seed in range(6):
        ph = generate(seed, pattern="multinodular", nodules="mixed")
        for n in ph.nodules:
            r, c = (int(round(v)) for v in n.center_rc)
            assert ph.nodule_mask[r, c] == (1 if n.kind == "cold" else 0)


def test_cold_nodule_is_photopenic():
    ph = generate(1, pattern="normal", nodules="cold")
    n = next(n for n in ph.nodules if n.kind == "cold")
    r, c = (int(round(v)) for v in n.center_rc)
    inside = ph.image[r - 1:r + 2, c - 1:c + 2].mean()
    rim = ph.image[(ph.lobe_mask == ph.lobe_mask[r, c]) & (ph.nodule_mask == 0)].mean()
    assert inside < rim


def test_cold_contrast_follows_measured_ranges_and_grows_with_size():
    from training.phantoms import cold_contrast
    assert 0.59 <= cold_contrast(9, 0.0) < cold_contrast(9, 1.0) <= 0.76
    assert 0.77 <= cold_contrast(12, 0.0) < cold_contrast(12, 1.0) <= 0.90
    assert cold_contrast(6, 0.5) < cold_contrast(9, 0.5) < cold_contrast(12, 0.5) < cold_contrast(25, 0.5) < 1


def test_phantom_acquisition_ranges():
    for seed in range(8):
        ph = generate(seed)
        assert 60_000 * 0.95 <= ph.total_counts <= 600_000 * 1.05
        rows, cols = np.nonzero(ph.lobe_mask)
        fill = max(np.ptp(rows), np.ptp(cols)) / ph.image.shape[0]
        assert 0.45 < fill < 0.85  # the gland fills about two thirds of the field
        assert 0.4 < ph.mm_per_px < 2.0


def test_matrix_256():
    ph = generate(8, matrix=256)
    assert ph.image.shape == ph.lobe_mask.shape == (256, 256)
    assert preprocess(ph.image).shape == (1, 1, 128, 128)


def test_resampling_and_normalisation():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.allclose(resample_image(img, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    assert np.array_equal(resample_labels(np.array([[1, 2], [0, 1]]), (4, 4))[::2, ::2], [[1, 2], [0, 1]])
    assert normalise(np.zeros((4, 4))).max() == 0
    x = normalise(np.array([[0.0, 1.0], [1.0, 100.0]]))
    assert x.max() <= 2.0 and x.min() >= 0.0


def test_augment_flip_swaps_lobe_labels():
    x = torch.zeros(64, 1, 8, 8)
    y = torch.zeros(64, 8, 8, dtype=torch.int64)
    y[:, :, :4], y[:, :, 4:] = 1, 2
    _, ya = augment(x, y, "segmentation", torch.Generator().manual_seed(0), rot_deg=0, scale=0, shift=0)
    assert (ya[:, :, 0] == 1).all() and (ya[:, :, -1] == 2).all()


def test_dice_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert ev.dice(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert ev.dice(a, b) == pytest.approx(0.5)
    assert ev.dice(a, np.zeros_like(a)) == 0.0


def test_components_dilation_and_detection():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True  # diagonal: one 8-connected component
    m[4, 4] = True
    lab, n = ev.connected_components(m)
    assert n == 2 and lab[0, 0] == lab[1, 1] != lab[4, 4]
    assert ev.dilate(np.pad(np.ones((1, 1), bool), 3), 2).sum() == 25
    prob = np.zeros((8, 8))
    prob[2:4, 2:4] = 0.9
    prob[6, 6] = 0.9
    gland = np.zeros((8, 8), bool)
    gland[2:4, 2:4] = True
    dets = ev.detect(prob, gland, 0.5, 2, (16, 16))  # (6, 6) is outside the dilated gland
    assert len(dets) == 1 and dets[0][:2] == pytest.approx((5.5, 5.5))  # grid (2.5, 2.5) -> frame


def _phantom_with(nodules):
    z = np.zeros((16, 16), np.uint8)
    return Phantom(z.astype(np.float32), z, z, tuple(nodules), "normal", 1.0, 1.0, 0)


def test_lesion_matching():
    from training.phantoms import NoduleTruth
    ph = _phantom_with([NoduleTruth((5.0, 5.0), 4.0, "cold", "image_left"),
                        NoduleTruth((12.0, 12.0), 2.0, "hot", "image_right")])
    # radius 2 px + 2 px margin: (9, 5) is 4 px away (hit), the duplicate is not double-counted
    hits, fp, fp_hot = ev.match([(9.0, 5.0, 0.9), (5.0, 6.0, 0.8), (12.0, 13.0, 0.7), (0.0, 15.0, 0.6)], ph)
    assert hits == [True] and fp == 2 and fp_hot == 1
    hits, fp, _ = ev.match([(9.5, 5.0, 0.9)], ph)
    assert hits == [False] and fp == 1


def test_export_roundtrip_metadata(tmp_path):
    torch.manual_seed(0)
    model = UNet(1, 3, base=2, levels=1)
    meta = export.build_metadata("segmentation", "0.0.1", {}, {"dice_mean": 0.5}, "tiny test model")
    proto = export.to_onnx(model, meta)
    x = np.random.default_rng(0).random((2, 1, 128, 128), dtype=np.float32)
    assert export.check_roundtrip(model, proto, x) <= 1e-4
    path = tmp_path / "thyroid-seg-unet-0.0.1.onnx"
    path.write_bytes(proto.SerializeToString())
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    assert set(export.REQUIRED_KEYS) <= set(props)
    assert props["task"] == "thyroid-segmentation" and props["name"] == "thyroid-seg-unet"
    assert props["version"] == "0.0.1" and props["output_activation"] == "softmax"
    assert json.loads(props["input_size"]) == [128, 128]
    assert json.loads(props["labels"]) == ["background", "lobe_image_left", "lobe_image_right"]
    assert json.loads(props["normalisation"]) == {"method": "percentile", "percentile": 99.5, "clip": 2.0}
    assert json.loads(props["metrics"]) == {"dice_mean": 0.5} and json.loads(props["thresholds"]) == {}
    assert props["created"].endswith("Z")
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape == [1, 1, 128, 128] and out.shape == [1, 3, 128, 128]
    assert export.next_version(tmp_path, "thyroid-seg-unet") == "0.1.0"
    assert export.next_version(tmp_path, "cold-nodule-unet") == "1.0.0"
    assert export.latest_model(tmp_path, "thyroid-segmentation") == path
