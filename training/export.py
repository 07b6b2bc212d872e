"""Export a checkpoint to a self-describing ONNX file: ``python -m training.export --task ...``.

Writes the ``metadata_props`` of ``models/README.md`` (the contract with ``orthanc_plugin``),
checks that onnxruntime reproduces the torch logits within 1e-4, chooses nodule thresholds on the
validation phantoms and stores the held-out figures of :mod:`training.evaluate` in ``metrics``.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training import evaluate as ev
from training.data import EVAL_SEED0, INPUT_SIZE, NORMALISATION, VAL_SEED0, preprocess
from training.models import UNet, build_model
from training.phantoms import generate

log = logging.getLogger(__name__)
TASKS = {
    "segmentation": {"task": "thyroid-segmentation", "name": "thyroid-seg-unet",
                     "labels": ["background", "lobe_image_left", "lobe_image_right"], "output_activation": "softmax"},
    "nodules": {"task": "cold-nodule-detection", "name": "cold-nodule-unet",
                "labels": ["cold_nodule"], "output_activation": "sigmoid"},
}
# Validation phantoms (default mix) on which the nodule thresholds are chosen, never the held-out set.
THRESHOLD_SEED0 = VAL_SEED0 + 100_000
REQUIRED_KEYS = ("task", "name", "version", "input_size", "normalisation", "labels", "output_activation",
                 "thresholds", "training_data", "metrics", "created")


def build_metadata(kind: str, version: str, thresholds: dict, metrics: dict, training_data: str,
                   normalisation: dict | None = None) -> dict[str, str]:
    """All contract keys as strings (structured values JSON-encoded); ``normalisation`` default :data:`NORMALISATION`."""
    spec = TASKS[kind]
    return {"task": spec["task"], "name": spec["name"], "version": version, "input_size": json.dumps(list(INPUT_SIZE)),
            "normalisation": json.dumps(normalisation or NORMALISATION), "labels": json.dumps(spec["labels"]),
            "output_activation": spec["output_activation"], "thresholds": json.dumps(thresholds),
            "training_data": training_data, "metrics": json.dumps(metrics),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def to_onnx(model: torch.nn.Module, metadata: dict[str, str]) -> onnx.ModelProto:
    """Trace ``model`` (eval mode) to ONNX opset 17 with input ``[1, 1, H, W]`` and the metadata."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 1, *INPUT_SIZE),), buf, opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    return proto


def set_metadata(proto: onnx.ModelProto, updates: dict[str, str]) -> None:
    """Set (replace) ``metadata_props`` entries in place."""
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(updates)
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)


def check_roundtrip(model: torch.nn.Module, proto: onnx.ModelProto, inputs: np.ndarray, atol: float = 1e-4) -> float:
    """Max |torch - onnxruntime| over ``inputs [N, 1, H, W]``; raises if above ``atol``."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = model.eval()(torch.from_numpy(x[None])).numpy()
            worst = max(worst, float(np.abs(sess.run(None, {"image": x[None]})[0] - ref).max()))
    if worst > atol:
        raise RuntimeError(f"onnxruntime differs from torch by {worst:.2e} > {atol}")
    return worst


def training_data_text(ck: dict) -> str:
    """``training_data`` summary of a checkpoint (and of the run it was fine-tuned from, if any)."""
    cfg = ck["config"]
    norm = cfg.get("normalisation") or NORMALISATION
    text = (f"synthetic planar thyroid phantoms (training/phantoms.py), seeds {cfg['train_seeds'][0]}-"
            f"{cfg['train_seeds'][1] - 1}, {cfg['steps']} steps of {cfg['batch_size']} (best epoch {ck['epoch']}), "
            f"{ck.get('total_train_seconds', 0):.0f} s on {cfg.get('device', 'cpu')}")
    mix = cfg.get("mix")
    if mix:
        lo, hi = mix["salivary_scale"]
        text += (f"; conditions drawn per phantom: I-123 {mix['p_i123']:.0%}, both skin markers forced on "
                 f"{mix['p_markers']:.0%}, salivary uptake x{lo}-{hi} {mix['p_salivary']:.0%}, 256x256 frames "
                 f"{mix['p_matrix256']:.0%} (otherwise Tc-99m, default markers and salivary uptake, 128x128)")
    text += f"; input normalised by the {norm['percentile']}th percentile, clip {norm.get('clip', 2.0)}"
    if cfg.get("init"):
        try:
            base = torch.load(cfg["init"], weights_only=False)
            text += "; fine-tuned from: " + training_data_text(base).removesuffix("; no patient data")
        except OSError:
            text += f"; fine-tuned from {cfg['init']}"
    return text + "; no patient data"


def next_version(models_dir: Path, name: str) -> str:
    """``1.0.0`` if no ``<name>-X.Y.Z.onnx`` exists, else the highest with its minor bumped."""
    found = [tuple(int(v) for v in m.groups()) for p in models_dir.glob(f"{name}-*.onnx")
             if (m := re.fullmatch(re.escape(name) + r"-(\d+)\.(\d+)\.(\d+)\.onnx", p.name))]
    if not found:
        return "1.0.0"
    major, minor, _ = max(found)
    return f"{major}.{minor + 1}.0"


def latest_model(models_dir: Path, task: str) -> Path:
    """Path of the highest-version ONNX file of ``task`` in ``models_dir``."""
    best = None
    for p in models_dir.glob("*.onnx"):
        meta = {m.key: m.value for m in onnx.load(str(p), load_external_data=False).metadata_props}
        if meta.get("task") == task:
            v = tuple(int(x) for x in meta["version"].split("."))
            best = max(best, (v, p)) if best else (v, p)
    if best is None:
        raise FileNotFoundError(f"no {task} model in {models_dir}")
    return best[1]


def held_out_figures(kind: str, proto: onnx.ModelProto, models_dir: Path, n_eval: int, n_val: int) -> tuple[dict, dict]:
    """Thresholds (validation phantoms, nodules only) and held-out metrics of ``proto``."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    eval_phs = ev.phantoms(range(EVAL_SEED0, EVAL_SEED0 + n_eval))
    if kind == "segmentation":
        m = ev.segmentation_metrics(sess, eval_phs)
        return {}, m | {"eval_seeds": f"{EVAL_SEED0}-{EVAL_SEED0 + n_eval - 1}"}
    seg = ev.session(latest_model(models_dir, TASKS["segmentation"]["task"]))
    val_phs = ev.phantoms(range(THRESHOLD_SEED0, THRESHOLD_SEED0 + n_val))
    thr = ev.select_thresholds(ev.nodule_cache(seg, sess, val_phs))
    m = ev.nodule_metrics(ev.nodule_cache(seg, sess, eval_phs), thr["probability"], thr["min_area_px"])
    return thr, m | {"eval_seeds": f"{EVAL_SEED0}-{EVAL_SEED0 + n_eval - 1}",
                     "criterion": "centroid within radius + 2 px"}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", choices=list(TASKS), required=True)
    ap.add_argument("--checkpoint", type=Path, help="default training/runs/<task>/best.pt")
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--version", help="semantic version; default: next free one")
    ap.add_argument("--n-eval", type=int, default=500, help="held-out phantoms for the metrics key")
    ap.add_argument("--n-val", type=int, default=1000, help="validation phantoms for the nodule thresholds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ck = torch.load(args.checkpoint or Path(f"training/runs/{args.task}/best.pt"), weights_only=False)
    model: UNet = build_model(ck["config"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    name = TASKS[args.task]["name"]
    version = args.version or next_version(args.models_dir, name)
    cfg = ck["config"]
    norm = cfg.get("normalisation") or NORMALISATION
    proto = to_onnx(model, build_metadata(args.task, version, {}, {}, training_data_text(ck), norm))
    probe = np.concatenate([preprocess(generate(VAL_SEED0 + i, matrix=128).image, norm) for i in range(4)])
    worst = check_roundtrip(model, proto, probe)
    print(f"onnxruntime vs torch max |diff| {worst:.2e}", flush=True)
    thr, metrics = held_out_figures(args.task, proto, args.models_dir, args.n_eval, args.n_val)
    set_metadata(proto, {"thresholds": json.dumps(thr), "metrics": json.dumps(metrics)})
    args.models_dir.mkdir(parents=True, exist_ok=True)
    out = args.models_dir / f"{name}-{version}.onnx"
    onnx.save(proto, str(out))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) thresholds {thr} metrics {json.dumps(metrics)}", flush=True)


if __name__ == "__main__":
    main()
