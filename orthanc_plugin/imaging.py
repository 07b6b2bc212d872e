"""Small numpy image helpers shared by the model wrapper and the pipelines."""

from __future__ import annotations

import numpy as np


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a 2-D (or channels-first 3-D) array to ``shape`` over the whole field of view.

    Exact integer shrink factors use block means (counts are averaged, as the training does);
    anything else uses bilinear interpolation with pixel centres aligned.
    """
    height, width = image.shape[-2:]
    out_h, out_w = shape
    if (height, width) == (out_h, out_w):
        return image.astype(np.float32, copy=False)
    if height % out_h == 0 and width % out_w == 0:
        fh, fw = height // out_h, width // out_w
        blocks = image.reshape(*image.shape[:-2], out_h, fh, out_w, fw)
        return blocks.mean(axis=(-3, -1)).astype(np.float32)
    rows = _axis_weights(height, out_h)
    cols = _axis_weights(width, out_w)
    return np.einsum("ih,...hw,jw->...ij", rows, image.astype(np.float32), cols).astype(np.float32)


def _axis_weights(size_in: int, size_out: int) -> np.ndarray:
    """Return the (size_out, size_in) matrix of linear interpolation weights along one axis."""
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    centres = np.clip(centres, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = centres - low
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    weights[np.arange(size_out), low] += 1 - frac
    weights[np.arange(size_out), high] += frac
    return weights


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected components of a boolean mask; returns (labels 1..count, count).

    Vectorised: each pixel repeatedly takes the smallest pixel index among its neighbours,
    with pointer jumping so that long shapes converge in a few passes.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.int32)
    if not mask.any():
        return out, 0
    outside = np.iinfo(np.int64).max
    flat_index = np.arange(mask.size, dtype=np.int64).reshape(mask.shape)
    labels = np.where(mask, flat_index, outside)
    height, width = mask.shape
    while True:
        padded = np.pad(labels, 1, constant_values=outside)
        smallest = labels.copy()
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                np.minimum(smallest, padded[dr:dr + height, dc:dc + width], out=smallest)
        smallest = np.where(mask, smallest, outside)
        inside = smallest[mask]
        smallest[mask] = labels.ravel()[inside]  # pointer jumping: follow the label's own label
        smallest = np.minimum(smallest, np.where(mask, labels, outside))
        if np.array_equal(smallest, labels):
            break
        labels = smallest
    _, inverse = np.unique(labels[mask], return_inverse=True)
    out[mask] = inverse.astype(np.int32) + 1
    return out, int(inverse.max()) + 1


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a boolean mask by a square of half-width ``radius``."""
    out = np.asarray(mask, dtype=bool).copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[1:, 1:] |= out[:-1, :-1]
        grown[:-1, :-1] |= out[1:, 1:]
        grown[1:, :-1] |= out[:-1, 1:]
        grown[:-1, 1:] |= out[1:, :-1]
        out = grown
    return out
