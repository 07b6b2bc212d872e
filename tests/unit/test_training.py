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


# --- report extensions: share error, calibration, progress bar, phantom options, figures ---------------

# sha256 (first 16 hex) of generate(seed, matrix=m) recorded with training/phantoms.py as committed in
# d3bf638, before the isotope/markers/salivary_scale options: default arguments must not change a phantom.
_PHANTOM_CHECKSUMS = {
    (128, 1): "ba9512c3b756f9be", (128, 4): "580fd4fb307d1cf2", (128, 7): "fe63b9f5fd1be82b",
    (128, 8): "6c8527c033c1a725", (128, 12345): "5bf64094c617f3dc",
    (256, 1): "476d4403095ca20d", (256, 4): "57a11a9c8b79e46d", (256, 7): "03d2c5fd1e414201",
    (256, 8): "9c584272173128ca", (256, 12345): "97a14218736e6468",
}


def _checksum(ph: Phantom) -> str:
    import hashlib
    h = hashlib.sha256()
    for a in (ph.image, ph.lobe_mask, ph.nodule_mask):
        h.update(np.ascontiguousarray(a).tobytes())
    truth = [[float(n.center_rc[0]), float(n.center_rc[1]), float(n.diameter_mm), n.kind, n.lobe] for n in ph.nodules]
    h.update(json.dumps([truth, ph.pattern, float(ph.mm_per_px), float(ph.stored_pixel_spacing_mm),
                         int(ph.total_counts)]).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("matrix, seed", sorted(_PHANTOM_CHECKSUMS))
def test_generate_default_unchanged(matrix, seed):
    # thyroiditis, toxic adenoma, multinodular (hot + cold), Graves, normal
    assert _checksum(generate(seed, matrix=matrix)) == _PHANTOM_CHECKSUMS[(matrix, seed)]


def test_explicit_defaults_are_the_defaults():
    a = generate(4, isotope="tc99m", markers=None, salivary_scale=1.0)
    assert _checksum(a) == _PHANTOM_CHECKSUMS[(128, 4)]


def test_i123_lowers_counts_keeps_geometry():
    for seed in range(6):
        tc, i1 = generate(seed), generate(seed, isotope="i123")
        assert 60_000 * 0.95 <= i1.total_counts <= 150_000 * 1.05
        assert np.array_equal(tc.lobe_mask, i1.lobe_mask) and tc.nodules == i1.nodules
    assert np.mean([generate(s, isotope="i123").total_counts for s in range(6)]) < \
        np.mean([generate(s).total_counts for s in range(6)])
    with pytest.raises(ValueError):
        generate(0, isotope="i131")


def test_markers_forced_on_and_off():
    on, off = generate(3, markers=True), generate(3, markers=False)
    assert on.image.max() > 3 * off.image.max()  # markers are 3-10x the hottest gland pixel


def test_count_share_error_known_values():
    from training.metrics import SHARE_UNDEFINED_PP, count_share, share_error_pp, summarise_errors
    img = np.array([[10.0, 10.0, 20.0, 20.0]])
    truth = np.array([[1, 1, 2, 2]])
    assert count_share(img, truth) == pytest.approx(100 / 3)
    assert share_error_pp(img, truth, truth) == 0.0
    assert share_error_pp(img, truth, np.array([[1, 1, 1, 2]])) == pytest.approx(100 / 3)  # 66.7 % vs 33.3 %
    assert share_error_pp(img, truth, np.array([[0, 1, 2, 2]])) == pytest.approx(100 / 3 - 20)  # 20 % vs 33.3 %
    assert share_error_pp(img, truth, np.zeros_like(truth)) == SHARE_UNDEFINED_PP
    s = summarise_errors([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["p90"] == pytest.approx(4 + 0.6 * 96) and s["n"] == 5 and s["n_undefined"] == 1
    assert summarise_errors([])["median"] is None


def test_reliability_and_ece_known_values():
    from training.metrics import reliability
    bins, ece = reliability([0.05, 0.15, 0.95, 0.95], [False, True, True, False])
    assert [(b["lo"], b["n"]) for b in bins] == [(0.0, 1), (0.1, 1), (0.9, 2)]
    assert bins[2]["confidence"] == pytest.approx(0.95) and bins[2]["fraction_hit"] == 0.5
    assert ece == pytest.approx((0.05 + 0.85 + 2 * 0.45) / 4)
    _, ece = reliability([0.25, 0.25, 0.25, 0.25, 1.0], [True, False, False, False, True])
    assert ece == pytest.approx(0.0)  # 1.0 falls in the last bin
    assert np.isnan(reliability([], [])[1])


def test_candidate_hits_and_bar_misses():
    from training.metrics import candidate_hits
    from training.phantoms import NoduleTruth
    from training.robustness import bar_misses
    ph = _phantom_with([NoduleTruth((5.0, 5.0), 4.0, "cold", "image_left")])
    assert candidate_hits([(9.0, 5.0, 0.9), (9.5, 5.0, 0.8)], ph) == [True, False]
    row = {"dice": 0.95, "dice_thyroiditis": 0.80, "sens_ge10": None, "sens_8_10": 0.8, "fp_per_image": 0.6,
           "share_median": 1.0}
    assert bar_misses(row) == ["thyroiditis Dice >= 0.85", "FP/image <= 0.5"]


def test_progress_bar_format():
    import io

    from training.train import Progress, format_progress
    assert format_progress(2, 5, 450, 900, 0.5, 60.0) == \
        "epoch 2/5 [##########..........] step 450/900 loss 0.5000 elapsed 1:00 ETA 1:00"
    assert format_progress(1, 5, 0, 900, 1.0, 0.0).endswith("[....................] step 0/900 loss 1.0000 "
                                                             "elapsed 0:00 ETA --:--")
    assert "[####################]" in format_progress(5, 5, 900, 900, 0.1, 3700.0)
    assert "elapsed 1:01:40 ETA 0:00" in format_progress(5, 5, 900, 900, 0.1, 3700.0)
    out = io.StringIO()  # not a terminal: one line per tenth of the run
    bar = Progress(100, 4, stream=out)
    for step in range(1, 101):
        bar.update(1 + (step - 1) // 25, step, 0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("epoch 4/4 [####################] step 100/100")


def test_report_figures_are_small_pngs(tmp_path):
    from PIL import Image

    from training.report_plots import Tile, froc_plot, gallery, reliability_plot
    pts = [{"fp_per_image": f, "sensitivity_ge10mm": s, "sensitivity_all": s - 0.1, "probability": p,
            "sensitivity_by_size": {"8-10mm": None}} for f, s, p in ((0.4, 0.99, 0.1), (0.1, 0.95, 0.5))]
    paths = [froc_plot(tmp_path / "f.png", pts, pts[0], "t"),
             reliability_plot(tmp_path / "c.png", [{"lo": 0.9, "hi": 1.0, "n": 3, "confidence": 0.95,
                                                    "fraction_hit": 1.0}], 0.05, 3, "t")]
    ph = generate(2)
    paths.append(gallery(tmp_path / "g.png", [Tile(ph.image, ["a", "b"], {"truth": ph.lobe_mask > 0})] * 3, 2, 96,
                         "t", [("true gland", "truth")]))
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100
        assert p.stat().st_size < 300_000


# --- 1.1.0: robustness mix, declared normalisation, I-123 rule threshold ---------------------------------

MIX = {"p_matrix256": 0.25, "p_i123": 0.25, "p_markers": 0.2, "p_salivary": 0.25, "salivary_scale": [1.5, 3.0]}


def test_sample_spec_default_unchanged_and_mix_draws_conditions():
    from training.data import data_tag, sample_spec
    for s in range(20):
        m, p, n, extra = sample_spec(s, "nodules")
        assert extra == {} and m in (128, 256)
        m2, p2, n2, _ = sample_spec(s, "nodules", MIX)
        assert (p2, n2) == (p, n)  # same pattern and nodule mode: only the conditions are added
    extras = [sample_spec(s, "segmentation", MIX)[3] for s in range(400)]
    share = np.mean([e.get("isotope") == "i123" for e in extras])
    assert 0.18 < share < 0.32
    assert 0.12 < np.mean([e.get("markers") is True for e in extras]) < 0.28
    assert all(1.5 <= e["salivary_scale"] <= 3.0 for e in extras if "salivary_scale" in e)
    assert data_tag(None, None) == "" and data_tag(MIX, {"percentile": 99.0, "clip": 2.0}) != ""


def test_preprocess_uses_declared_percentile():
    img = np.zeros((128, 128), np.float32)
    img[:, :2] = 10.0  # 1.6 % of the pixels bright: the 99th and 99.5th percentiles are both 10
    img[0, 0] = 1000.0
    a = preprocess(img)
    b = preprocess(img, {"method": "percentile", "percentile": 50.0, "clip": 2.0})
    assert a.shape == b.shape == (1, 1, 128, 128)
    assert a[0, 0, 5, 0] == pytest.approx(1.0) and b[0, 0, 5, 0] == pytest.approx(2.0)  # p50 is 0: divide by 1, clip
    meta = export.build_metadata("nodules", "0.0.1", {}, {}, "t", {"method": "percentile", "percentile": 99.0,
                                                                     "clip": 2.0})
    assert json.loads(meta["normalisation"])["percentile"] == 99.0


def test_i123_threshold_choice():
    from training.i123_threshold import choose
    rows = [{"probability": p, "sensitivity_ge10mm": s, "sensitivity_all": s, "fp_per_image": f}
            for p, s, f in ((0.1, 0.98, 0.6), (0.3, 0.96, 0.4), (0.5, 0.95, 0.3), (0.7, 0.93, 0.1))]
    assert choose(rows)["probability"] == 0.5
    assert choose(rows, 0.99)["probability"] == 0.1  # none meets: the most sensitive


def test_shipped_i123_rule_threshold_is_a_probability():
    from pathlib import Path
    rules = json.loads((Path(__file__).resolve().parents[2] / "rules" / "default.json").read_text())["rules"]
    (rule,) = [r for r in rules if r.get("variant") == "i123"]
    assert 0.0 < rule["options"]["nodule_probability"] < 1.0
