"""Synthetic planar (anterior) thyroid scintigraphy phantoms, pure numpy.

Geometry is drawn in millimetres in the patient plane (x: image columns, increasing to the
image's right; y: image rows, increasing caudally), rasterised at pixel centres, blurred with a
Gaussian system response of 4-8 mm FWHM and turned into Poisson counts. Figures follow
``shared/domain/thyroid-scintigraphy.md``. In the anterior view the patient's right lobe is on the
image's left; labels here are always image sides.

Cold-nodule contrast ``(parenchyma - nodule) / parenchyma`` is drawn from the measured pinhole
ranges (9 mm: 0.59-0.76, 12 mm: 0.77-0.90, growing with size) and applied to the activity *before*
the system blur, with a sphere-projection profile, so the contrast seen in the image is lower for
small nodules. For toxic adenoma the rest of the gland is suppressed to 0-20 % of the hot nodule.
``isotope="i123"`` mimics an I-123 view (see :func:`generate`); the default arguments give the same
phantom per seed as before the option existed (checked by a checksum test).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantom_lobe import Lobe as _Lobe

PATTERNS = ("normal", "graves", "thyroiditis", "multinodular", "toxic_adenoma")
PATTERN_WEIGHTS = (0.30, 0.15, 0.15, 0.25, 0.15)
NODULE_MODES = ("none", "cold", "hot", "mixed")
ISOTOPES = ("tc99m", "i123")
# (diameter mm, low, high) of the cold-nodule contrast, linearly interpolated in between.
_CONTRAST = np.array([[5, 0.35, 0.55], [9, 0.59, 0.76], [12, 0.77, 0.90], [20, 0.85, 0.95], [40, 0.90, 0.97]])


@dataclass(frozen=True)
class NoduleTruth:
    """One nodule: centre (row, col) in pixels, diameter in mm, ``cold``/``hot``, image side."""

    center_rc: tuple[float, float]
    diameter_mm: float
    kind: str
    lobe: str


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic anterior thyroid view with its ground truth (see module docstring)."""

    image: np.ndarray
    lobe_mask: np.ndarray
    nodule_mask: np.ndarray
    nodules: tuple[NoduleTruth, ...]
    pattern: str
    mm_per_px: float
    stored_pixel_spacing_mm: float
    total_counts: int


def gaussian_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur by matrix products; the kernel is renormalised at the borders.

    Parameters
    ----------
    img : np.ndarray
        2-D image.
    sigma_px : float
        Standard deviation in pixels (no blur if <= 0).

    Returns
    -------
    np.ndarray
        Blurred float64 image of the same shape.
    """
    if sigma_px <= 0:
        return img.astype(np.float64)
    mats = []
    for n in img.shape:
        i = np.arange(n)
        g = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma_px) ** 2)
        mats.append(g / g.sum(axis=1, keepdims=True))
    return mats[0] @ img.astype(np.float64) @ mats[1].T


def cold_contrast(diameter_mm: float, frac: float) -> float:
    """Cold-nodule contrast for a diameter, ``frac`` in [0, 1] placing it inside the measured range."""
    lo = np.interp(diameter_mm, _CONTRAST[:, 0], _CONTRAST[:, 1])
    hi = np.interp(diameter_mm, _CONTRAST[:, 0], _CONTRAST[:, 2])
    return float(lo + frac * (hi - lo))


def _nodule_plan(rng: np.random.Generator, pattern: str, mode: str | None) -> list[tuple[str, float]]:
    """Kinds and diameters (mm) of the nodules to place."""
    if mode is None:
        p_cold = {"normal": 0.5, "graves": 0.2, "thyroiditis": 0.05, "multinodular": 1.0, "toxic_adenoma": 0.0}[pattern]
        mode = "mixed" if pattern == "multinodular" else ("cold" if rng.random() < p_cold else "none")
    n_cold = {"none": 0, "cold": int(rng.choice([1, 1, 1, 2, 3])), "hot": 0,
              "mixed": int(rng.integers(1, 4))}[mode]
    n_hot = {"none": 0, "cold": 0, "hot": 1, "mixed": int(rng.integers(0, 3))}[mode]
    plan = []
    for _ in range(n_cold):
        band = rng.random()
        d = rng.uniform(8, 25) if band < 0.78 else (rng.uniform(5, 8) if band < 0.9 else rng.uniform(25, 40))
        plan.append(("cold", d))
    plan += [("hot", rng.uniform(8, 25)) for _ in range(n_hot)]
    if pattern == "toxic_adenoma":
        plan.insert(0, ("adenoma", rng.uniform(15, 35)))
    return plan


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Smooth zero-mean, unit-variance random field."""
    f = gaussian_blur(rng.standard_normal(shape), sigma_px)
    return (f - f.mean()) / (f.std() + 1e-9)


def generate(seed: int, *, matrix: int = 128, pattern: str | None = None, nodules: str | None = None,
             isotope: str = "tc99m", markers: bool | None = None, salivary_scale: float = 1.0) -> Phantom:
    """Draw one synthetic anterior thyroid scintigram, deterministic per ``seed``.

    Parameters
    ----------
    seed : int
        Seed of the whole draw (same seed and arguments give the same phantom).
    matrix : int
        Square matrix size (128 or 256 in practice).
    pattern : str or None
        One of :data:`PATTERNS`; drawn with :data:`PATTERN_WEIGHTS` if None.
    nodules : str or None
        One of :data:`NODULE_MODES`; drawn according to the pattern if None (a toxic adenoma
        always has its hot nodule).
    isotope : str
        ``tc99m`` (default) or ``i123``: 60-150 k counts instead of 60-600 k, background x1.5-2.5 and
        salivary uptake x1-1.6 (scatter, 4-6 h uptake) and a broad 529 keV penetration halo holding
        5-15 % of the counts. Gland and nodules are the same as the ``tc99m`` draw of the seed.
    markers : bool or None
        None: each skin marker (chin, suprasternal notch) is present with probability 0.7 when it
        falls in the field; True: both, moved into the field if needed; False: none.
    salivary_scale : float
        Factor on the salivary-gland (and swallowed-saliva) uptake.

    Returns
    -------
    Phantom
        Counts image and truth.
    """
    rng = np.random.default_rng(seed)
    if pattern is None:
        pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
    if pattern not in PATTERNS or (nodules is not None and nodules not in NODULE_MODES):
        raise ValueError(f"unknown pattern {pattern!r} or nodules {nodules!r}")
    if isotope not in ISOTOPES:
        raise ValueError(f"unknown isotope {isotope!r}; known: {ISOTOPES}")
    plan = _nodule_plan(rng, pattern, nodules)
    scale = {"graves": (1.15, 1.5), "multinodular": (1.1, 1.6)}.get(pattern, (0.9, 1.1))
    scale = rng.uniform(*scale)
    length, width, gap = rng.uniform(40, 60) * scale, rng.uniform(15, 25) * scale, rng.uniform(10, 20)
    lobes = []
    for side, f_lo, f_hi in ((-1, 0.95, 1.12), (1, 0.88, 1.05)):  # patient right (image left) larger
        f = rng.uniform(f_lo, f_hi)
        lobes.append(_Lobe(side, 0.0, rng.uniform(-3, 3), length * f * rng.uniform(0.93, 1.07),
                           width * f * rng.uniform(0.93, 1.07), rng.uniform(5, 25), rng.uniform(0.0, 0.3),
                           rng.uniform(2.3, 3.2)))
    sides = rng.integers(0, 2, size=len(plan))
    for (_, d), s in zip(plan, sides):  # a big nodule enlarges its lobe
        lobes[s].length = max(lobes[s].length, d + 16)
        lobes[s].width = max(lobes[s].width, d + 6)
    for lb in lobes:
        lb.cx = lb.side * (gap / 2 + lb.width / 2)

    # Field of view: the gland fills about two thirds of it.
    g = np.arange(-120.0, 120.0, 1.0)  # lobes on a 1 mm grid give the gland's true extent
    gx, gy = np.meshgrid(g, g)
    inside = (lobes[0].thickness(gx, gy) > 0) | (lobes[1].thickness(gx, gy) > 0)
    ext_x, ext_y = np.ptp(gx[inside]) + 1, np.ptp(gy[inside]) + 1
    fov = max(ext_x, ext_y) / rng.uniform(0.6, 0.72)
    mm = fov / matrix
    off_x, off_y = rng.uniform(-0.04, 0.04) * fov, rng.uniform(0.0, 0.1) * fov
    coords = (np.arange(matrix) + 0.5 - matrix / 2) * mm
    x, y = np.meshgrid(coords - off_x, coords - off_y)

    # Gland: lobes, isthmus, pyramidal lobe.
    thick = [lb.thickness(x, y) for lb in lobes]
    gland = np.maximum(thick[0] * rng.uniform(0.85, 1.15), thick[1] * rng.uniform(0.85, 1.15))
    support = (thick[0] > 0) | (thick[1] > 0)
    (xl, yl), (xr, yr) = (lb.to_xy(-0.25 * lb.length, 0.0) for lb in lobes)
    x_mid, y_isth = 0.5 * (xl + xr), 0.5 * (yl + yr)
    p_isthmus = {"graves": 0.9}.get(pattern, 0.85)
    if rng.random() < p_isthmus:
        h = rng.uniform(6, 14) * scale
        prof = np.sqrt(np.clip(1 - ((y - y_isth) / (0.5 * h)) ** 2, 0, None)) * ((x > xl) & (x < xr))
        gland = np.maximum(gland, prof * rng.uniform(0.2, 0.6))
        support |= prof > 0
        if rng.random() < (0.3 if pattern == "graves" else 0.1):
            xp, wp, lp = x_mid + rng.uniform(-6, 6), rng.uniform(4, 7), rng.uniform(15, 35)
            t = (y_isth - 0.4 * h - y) / lp
            pyr = np.sqrt(np.clip(1 - ((x - xp) / (0.5 * wp)) ** 2, 0, None)) * ((t > 0) & (t < 1))
            gland = np.maximum(gland, pyr * (1 - 0.5 * np.clip(t, 0, 1)) * rng.uniform(0.2, 0.5))
            support |= pyr > 0
    px_sig = 3.0 / mm
    hetero = rng.uniform(0.12, 0.25) if pattern == "multinodular" else rng.uniform(0.03, 0.08)
    gland = gland * np.clip(1 + hetero * _texture(rng, x.shape, px_sig * (1.7 if hetero > 0.1 else 1)), 0.2, None)

    # Uptake levels relative to a normal parenchyma of 1.
    bg = rng.uniform(0.07, 0.11)
    sal = rng.uniform(0.2, 0.8)
    uptake = 1.0
    if pattern == "graves":
        sal = rng.uniform(0.1, 0.35)
        uptake = sal * rng.uniform(9, 25)
    elif pattern == "thyroiditis":
        bg, sal, uptake = rng.uniform(0.08, 0.14), rng.uniform(0.5, 1.0), rng.uniform(0.22, 0.5)
    gland = gland * uptake

    nodule_mask = np.zeros(x.shape, bool)
    truths = []
    for (kind, d), s in zip(plan, sides):
        lb, r = lobes[s], d / 2
        for _ in range(30):
            u = rng.uniform(-1, 1) * max(0.5 * lb.length - r - 3, 0)
            n_sq = lb.squareness
            half = float(lb.half_width(u)) * max(1 - abs(u / (0.5 * lb.length)) ** n_sq, 0) ** (1 / n_sq)
            v = rng.uniform(-1, 1) * max(half - r - 1, 0)
            cx, cy = lb.to_xy(u, v)
            if all(np.hypot(cx - ox, cy - oy) > r + orr + 1 for ox, oy, orr in
                   ((t.center_rc[1], t.center_rc[0], t.diameter_mm / 2) for t in truths)):
                break
        else:
            continue
        rho2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
        prof = np.sqrt(np.clip(1 - rho2, 0, None)) * support
        local = float(gland[np.unravel_index(np.argmax(prof), prof.shape)]) if prof.any() else uptake
        if kind == "cold":
            gland = gland * (1 - cold_contrast(d, rng.random()) * prof)
            nodule_mask |= (rho2 < 1) & support
        elif kind == "hot":
            gland = gland + (rng.uniform(1.5, 5) - 1) * local * prof
        else:  # autonomous adenoma: hot nodule, rest of the gland suppressed to 0-20 %
            peak = rng.uniform(1.5, 5)
            gland = gland * peak * rng.uniform(0.0, 0.2) / max(local, 1e-6) + peak * prof
        # stored in (row, col) pixels; temporary mm (x, y) kept for overlap tests then converted
        truths.append(NoduleTruth((cy, cx), float(d), "cold" if kind == "cold" else "hot",
                                  "image_left" if s == 0 else "image_right"))

    # Surroundings: neck soft tissue, salivary glands, swallowed saliva, markers.
    if isotope == "i123":  # drawn after the gland so the seed's geometry is that of its tc99m draw
        bg, sal = bg * rng.uniform(1.5, 2.5), sal * rng.uniform(1.0, 1.6)
    sal *= salivary_scale
    wn = rng.uniform(95, 135)
    neck = np.sqrt(np.clip(1 - ((x - x_mid - rng.uniform(-5, 5)) / (0.5 * wn)) ** 2, 0, None))
    act = bg * neck * (1 + rng.uniform(-0.2, 0.2) * y / 60) + 0.003
    top = min(lb.cy - 0.5 * lb.length for lb in lobes)
    for sd in (-1, 1):
        for cx, cy, ax, ay, lvl in ((rng.uniform(28, 42), rng.uniform(12, 30), rng.uniform(14, 22),
                                     rng.uniform(10, 15), 1.0),  # submandibular, then parotid (half the time)
                                    (rng.uniform(45, 60), rng.uniform(40, 65), rng.uniform(15, 22), rng.uniform(18, 28),
                                     rng.uniform(0.6, 1.1) * (rng.random() < 0.5))):
            e = 1 - ((x - x_mid - sd * cx) / ax) ** 2 - ((y - top + cy) / ay) ** 2
            act += sal * lvl * rng.uniform(0.8, 1.2) * np.sqrt(np.clip(e, 0, None))
    if rng.random() < 0.6:
        ws, y_end = rng.uniform(3, 6), rng.uniform(y_isth, y_isth + 60)
        strip = np.sqrt(np.clip(1 - ((x - x_mid - rng.uniform(-3, 3)) / (0.5 * ws)) ** 2, 0, None))
        level = rng.uniform(0.1, 0.8) * sal
        act += level * strip * (y < y_end) * np.clip(1 + 0.5 * _texture(rng, x.shape, 4 / mm), 0, None)
    act += gland
    sigma = rng.uniform(4, 8) / 2.3548 / mm
    expected = gaussian_blur(act, sigma)
    if isotope == "i123":
        expected += rng.uniform(0.05, 0.15) * gaussian_blur(act, 15 / mm)
    bottom = max(lb.cy + 0.5 * lb.length for lb in lobes)
    marker_xy = ((x_mid + rng.uniform(-4, 4), top - rng.uniform(30, 60)),  # chin
                 (x_mid + rng.uniform(-4, 4), bottom + rng.uniform(8, 25)))  # suprasternal notch
    for mx, my in marker_xy:
        col, row = (mx + off_x) / mm + matrix / 2 - 0.5, (my + off_y) / mm + matrix / 2 - 0.5
        present = rng.random() < 0.7 if markers is None else markers
        if markers:
            col, row = float(np.clip(col, 2, matrix - 3)), float(np.clip(row, 2, matrix - 3))
        if present and 1 <= col < matrix - 1 and 1 <= row < matrix - 1:
            ii, jj = np.indices(x.shape)
            sm = 0.5 * sigma + 0.3  # a skin marker sits close to the pinhole: sharper than the gland
            expected += rng.uniform(3, 10) * expected.max() * np.exp(-((ii - row) ** 2 + (jj - col) ** 2) / (2 * sm**2))

    total = int(np.exp(rng.uniform(np.log(60e3), np.log(150e3 if isotope == "i123" else 600e3))))
    image = rng.poisson(expected * total / expected.sum()).astype(np.float32)
    lobe_mask = np.where(support, np.where(x < x_mid, 1, 2), 0).astype(np.uint8)
    to_rc = [NoduleTruth(((t.center_rc[0] + off_y) / mm + matrix / 2 - 0.5,
                          (t.center_rc[1] + off_x) / mm + matrix / 2 - 0.5), t.diameter_mm, t.kind, t.lobe)
             for t in truths]
    return Phantom(image, lobe_mask, nodule_mask.astype(np.uint8), tuple(to_rc), pattern, float(mm),
                   float(rng.uniform(0.75, 3.3)), int(image.sum()))
