"""Pre/post-processing shared with the plugin's contract, and phantom datasets for training.

Seeds: training ``0 ..`` (1.0.0: 0-3999; 1.1.0 fine-tuning: 20000-23999), validation (model
selection, thresholds; the I-123 rule threshold from ``VAL_SEED0 + 200000``) from :data:`VAL_SEED0`,
held-out evaluation from :data:`EVAL_SEED0`; the ranges never overlap. :data:`NORMALISATION` is the
1.0.0 default; a config's ``normalisation`` (1.1.0: 99th percentile) overrides it and is declared
in the exported file.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.phantoms import PATTERNS, generate

log = logging.getLogger(__name__)
INPUT_SIZE = (128, 128)
NORMALISATION = {"method": "percentile", "percentile": 99.5, "clip": 2.0}
VAL_SEED0 = 5_000_000
EVAL_SEED0 = 10_000_000


def normalise(img: np.ndarray, percentile: float = 99.5, clip: float = 2.0) -> np.ndarray:
    """Divide by the ``percentile`` of the frame (1 if it is 0) and clip to ``[0, clip]``."""
    p = float(np.percentile(img, percentile))
    return np.clip(img / (p if p > 0 else 1.0), 0.0, clip).astype(np.float32)


def resample_image(img: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Resample a whole frame to ``size``: block average for integer shrink factors, else bilinear."""
    h, w = img.shape
    th, tw = size
    img = img.astype(np.float32)
    if (h, w) == (th, tw):
        return img
    if h % th == 0 and w % tw == 0:
        return img.reshape(th, h // th, tw, w // tw).mean(axis=(1, 3))
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def resample_labels(lbl: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a label map to ``shape`` (pixel-centre sampling)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * lbl.shape[0] / shape[0]).astype(int), lbl.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * lbl.shape[1] / shape[1]).astype(int), lbl.shape[1] - 1)
    return lbl[np.ix_(rows, cols)]


def labels_to_input_grid(lbl: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Majority label per block (integer factors) or nearest, for training targets."""
    h, w = lbl.shape
    if (h, w) == size or h % size[0] or w % size[1]:
        return resample_labels(lbl, size)
    blocks = lbl.reshape(size[0], h // size[0], size[1], w // size[1])
    votes = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(int(lbl.max()) + 1)])
    return votes.argmax(axis=0).astype(lbl.dtype)


def preprocess(frame: np.ndarray, normalisation: dict | None = None) -> np.ndarray:
    """Network input ``float32[1, 1, 128, 128]`` from a counts frame, as the plugin does it.

    ``normalisation`` is the model's declared ``{"method": "percentile", "percentile": p, "clip": c}``
    (default :data:`NORMALISATION`, that of the 1.0.0 files).
    """
    norm = normalisation or NORMALISATION
    x = normalise(resample_image(frame, INPUT_SIZE), float(norm["percentile"]), float(norm.get("clip", 2.0)))
    return x[None, None]


def sample_spec(seed: int, task: str, mix: dict | None = None) -> tuple[int, str | None, str | None, dict]:
    """Matrix, pattern, nodule mode and extra :func:`generate` options of a training/validation phantom.

    Segmentation over-samples the hard patterns; the nodule task over-samples cold nodules and
    keeps hot nodules and nodule-free glands as negatives. Without ``mix`` every phantom is a
    Tc-99m one with the default markers and salivary uptake, 20 % at 256x256 (the 1.0.0 data).
    With ``mix`` (keys ``p_matrix256``, ``p_i123``, ``p_markers``, ``p_salivary``, ``salivary_scale``
    ``[low, high]``) the acquisition conditions are drawn from a second random stream of the seed:
    I-123 views, both skin markers forced into the field, salivary uptake scaled up, 256x256 frames.
    """
    rng = np.random.default_rng([seed, 7])
    matrix = 256 if rng.random() < (0.2 if mix is None else float(mix["p_matrix256"])) else 128
    extra: dict = {}
    if mix is not None:
        crng = np.random.default_rng([seed, 11])
        if crng.random() < float(mix["p_i123"]):
            extra["isotope"] = "i123"
        if crng.random() < float(mix["p_markers"]):
            extra["markers"] = True
        if crng.random() < float(mix["p_salivary"]):
            extra["salivary_scale"] = float(crng.uniform(*mix["salivary_scale"]))
    if task == "segmentation":
        return matrix, str(rng.choice(PATTERNS, p=(0.25, 0.15, 0.25, 0.2, 0.15))), None, extra
    pattern = str(rng.choice(PATTERNS, p=(0.3, 0.15, 0.1, 0.3, 0.15)))
    mode = None if pattern in ("multinodular", "toxic_adenoma") else str(
        rng.choice(["cold", "mixed", "none", "hot"], p=(0.55, 0.15, 0.2, 0.1)))
    return matrix, pattern, mode, extra


def make_arrays(seeds: range, task: str, mix: dict | None = None,
                normalisation: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[N, 1, 128, 128]`` and targets ``[N, 128, 128]`` (lobe labels or cold-nodule mask)."""
    xs = np.empty((len(seeds), 1, *INPUT_SIZE), np.float32)
    ys = np.empty((len(seeds), *INPUT_SIZE), np.uint8)
    for i, s in enumerate(seeds):
        matrix, pattern, mode, extra = sample_spec(s, task, mix)
        ph = generate(s, matrix=matrix, pattern=pattern, nodules=mode, **extra)
        xs[i] = preprocess(ph.image, normalisation)[0]
        ys[i] = labels_to_input_grid(ph.lobe_mask if task == "segmentation" else ph.nodule_mask)
    return xs, ys


def data_tag(mix: dict | None, normalisation: dict | None) -> str:
    """Cache-name suffix of a non-default mix / normalisation ('' for the 1.0.0 data)."""
    parts = []
    if mix is not None:
        parts.append("mix" + "-".join(f"{k}{v}" for k, v in sorted(mix.items())).replace(" ", ""))
    if normalisation is not None and normalisation != NORMALISATION:
        parts.append(f"p{normalisation['percentile']}c{normalisation.get('clip', 2.0)}")
    return ("_" + "_".join(parts)).replace("[", "").replace("]", "").replace(",", "-") if parts else ""


def cached_arrays(seeds: range, task: str, cache_dir: Path, mix: dict | None = None,
                  normalisation: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_arrays` cached as ``.npz`` under ``cache_dir`` (git-ignored ``training/runs``)."""
    path = cache_dir / f"{task}_{seeds.start}_{seeds.stop}{data_tag(mix, normalisation)}.npz"
    if path.exists():
        d = np.load(path)
        return d["x"], d["y"]
    log.info("generating %d phantoms for %s -> %s", len(seeds), task, path)
    x, y = make_arrays(seeds, task, mix, normalisation)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y)
    return x, y


def augment(x: torch.Tensor, y: torch.Tensor, task: str, gen: torch.Generator,
            rot_deg: float = 12.0, scale: float = 0.12, shift: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip (swapping image-left/right labels), affine and intensity jitter of a batch.

    Parameters
    ----------
    x : torch.Tensor
        Normalised inputs ``[N, 1, H, W]``.
    y : torch.Tensor
        Integer targets ``[N, H, W]``.
    task : str
        ``segmentation`` (labels 1/2 swap on flips) or ``nodules``.
    gen : torch.Generator
        Seeded generator.

    Returns
    -------
    tuple of torch.Tensor
        Augmented inputs and targets.
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    yf = y.flip(-1)
    if task == "segmentation":
        yf = torch.where(yf == 1, 2, torch.where(yf == 2, 1, yf))
    y = torch.where(flip[:, None, None], yf, y)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rot_deg)
    sc = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    tr = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift * 2
    theta = torch.stack([torch.stack([torch.cos(ang) / sc, -torch.sin(ang) / sc, tr[:, 0]], 1),
                         torch.stack([torch.sin(ang) / sc, torch.cos(ang) / sc, tr[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.1
    return (x * gain).clamp(0, NORMALISATION["clip"]), y.round().to(torch.int64)
