"""Geometry of one thyroid lobe for :mod:`training.phantoms` (patient plane, millimetres).

x increases to the image's right, y caudally; ``side`` is -1 for the image-left lobe, +1 for the
image-right one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Lobe:
    """One thyroid lobe: a tapered super-ellipsoid in the patient plane (mm)."""

    side: int  # -1 image left, +1 image right
    cx: float
    cy: float
    length: float
    width: float
    tilt_deg: float
    taper: float
    squareness: float = 2.0  # super-ellipse exponent of the outline (2: ellipse; fuller above 2)

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (x, y) along the long axis (towards the upper pole) and across it."""
        t = np.deg2rad(self.tilt_deg)
        return (np.array([self.side * np.sin(t), -np.cos(t)]), np.array([np.cos(t), self.side * np.sin(t)]))

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Long-axis and cross-axis coordinates (mm) of points ``(x, y)``."""
        a, p = self.axes()
        dx, dy = x - self.cx, y - self.cy
        return dx * a[0] + dy * a[1], dx * p[0] + dy * p[1]

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        """Patient-plane point at local coordinates ``(u, v)``."""
        a, p = self.axes()
        return self.cx + u * a[0] + v * p[0], self.cy + u * a[1] + v * p[1]

    def half_width(self, u: np.ndarray | float) -> np.ndarray:
        """Half-width at long-axis position ``u`` (upper pole narrower by ``taper``)."""
        return 0.5 * self.width * (1.0 - self.taper * np.clip(np.asarray(u) / (0.5 * self.length), -1, 1))

    def thickness(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised projected thickness of the tapered ellipsoid (1 at its centre, 0 outside)."""
        u, v = self.local(x, y)
        q = np.abs(u / (0.5 * self.length)) ** self.squareness + np.abs(v / self.half_width(u)) ** self.squareness
        return np.sqrt(np.clip(1.0 - q, 0.0, None))
