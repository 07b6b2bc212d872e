"""Pillow drawings of the evaluation report: FROC curve, reliability diagram, image galleries.

No plotting library: axes, curves and image tiles are drawn with :mod:`PIL.ImageDraw`. Galleries
are stored as palette PNGs (64 grey levels plus the overlay colours) to keep each file small.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)
COLOURS = {"truth": (0, 230, 0), "pred": (255, 40, 40), "cold": (0, 220, 255), "cand": (255, 220, 0),
           "blue": (31, 100, 200), "orange": (230, 120, 20), "grey": (120, 120, 120), "white": (255, 255, 255),
           "black": (0, 0, 0), "light": (225, 225, 225), "panel": (24, 24, 24)}


def font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (the bitmap default on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _palette_png(img: Image.Image, path: Path) -> Path:
    """Save ``img`` (RGB) as a palette PNG: 64 greys and :data:`COLOURS`, no dithering."""
    entries = [(v, v, v) for v in np.linspace(0, 255, 64).astype(int)] + list(COLOURS.values())
    pal = Image.new("P", (1, 1))
    pal.putpalette([c for rgb in entries for c in rgb] + [0] * 3 * (256 - len(entries)))
    img.convert("RGB").quantize(palette=pal, dither=Image.Dither.NONE).save(path, optimize=True)
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1e3)
    return path


class Axes:
    """A data rectangle on a drawing: maps data ``(x, y)`` to pixels and draws ticks and labels."""

    def __init__(self, img: Image.Image, box: tuple[int, int, int, int],
                 xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
        self.img, self.draw, self.box, self.xlim, self.ylim = img, ImageDraw.Draw(img), box, xlim, ylim

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of data point ``(x, y)``."""
        x0, y0, x1, y1 = self.box
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)

    def frame(self, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str) -> None:
        """Grid, ticks, tick labels and axis labels."""
        d, f = self.draw, font(12)
        x0, y0, x1, y1 = self.box
        for t in xticks:
            px = self.px(t, self.ylim[0])[0]
            d.line([(px, y0), (px, y1)], fill=COLOURS["light"])
            d.text((px, y1 + 4), f"{t:g}", fill=COLOURS["black"], font=f, anchor="mt")
        for t in yticks:
            py = self.px(self.xlim[0], t)[1]
            d.line([(x0, py), (x1, py)], fill=COLOURS["light"])
            d.text((x0 - 5, py), f"{t:g}", fill=COLOURS["black"], font=f, anchor="rm")
        d.rectangle(self.box, outline=COLOURS["black"])
        d.text(((x0 + x1) / 2, y1 + 22), xlabel, fill=COLOURS["black"], font=font(13), anchor="mt")
        label = Image.new("RGB", (y1 - y0, 18), COLOURS["white"])
        ImageDraw.Draw(label).text(((y1 - y0) / 2, 9), ylabel, fill=COLOURS["black"], font=font(13), anchor="mm")
        self.img.paste(label.rotate(90, expand=True), (x0 - 58, y0))

    def polyline(self, xs: Sequence[float], ys: Sequence[float], colour: tuple[int, int, int], width: int = 2,
                 marker: int = 3) -> None:
        """Connected points with round markers."""
        pts = [self.px(x, y) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            self.draw.line(pts, fill=colour, width=width)
        for px, py in pts:
            self.draw.ellipse([px - marker, py - marker, px + marker, py + marker], fill=colour)


def _legend(draw: ImageDraw.ImageDraw, xy: tuple[int, int], items: Sequence[tuple[str, tuple[int, int, int]]]) -> None:
    x, y = xy
    for text, colour in items:
        draw.rectangle([x, y + 4, x + 14, y + 10], fill=colour)
        draw.text((x + 20, y), text, fill=COLOURS["black"], font=font(12))
        y += 17


def froc_plot(path: Path, froc: Sequence[dict], operating: dict, title: str) -> Path:
    """FROC curve: lesion sensitivity (>=10 mm, 8-10 mm, all) against false positives per image.

    ``froc``: :func:`training.evaluate.nodule_metrics` results over a probability sweep;
    ``operating``: the one at the shipped thresholds (circled).
    """
    img = Image.new("RGB", (620, 430), COLOURS["white"])
    xmax = max(0.6, float(np.ceil(max(f["fp_per_image"] for f in froc) * 10) / 10))
    ax = Axes(img, (80, 40, 600, 360), (0.0, xmax), (0.0, 1.0))
    d = ax.draw
    ax.frame(np.round(np.linspace(0, xmax, 7), 2), np.linspace(0, 1, 11).round(1), "false positives per image",
             "lesion sensitivity")
    d.line([ax.px(0, 0.95), ax.px(xmax, 0.95)], fill=COLOURS["grey"], width=1)
    d.line([ax.px(0.5, 0), ax.px(0.5, 1)], fill=COLOURS["grey"], width=1)
    d.text(ax.px(0.5, 0.03), " bar 0.5 FP/image", fill=COLOURS["grey"], font=font(11), anchor="lb")
    d.text(ax.px(xmax, 0.95), "bar 0.95 ", fill=COLOURS["grey"], font=font(11), anchor="rb")
    order = sorted(froc, key=lambda f: f["fp_per_image"])
    xs = [f["fp_per_image"] for f in order]
    series = (("cold >= 10 mm", COLOURS["blue"], [f["sensitivity_ge10mm"] for f in order]),
              ("cold 8-10 mm", COLOURS["orange"], [f["sensitivity_by_size"]["8-10mm"] or 0.0 for f in order]),
              ("all cold nodules (>= 5 mm)", COLOURS["grey"], [f["sensitivity_all"] for f in order]))
    for _, colour, ys in series:
        ax.polyline(xs, ys, colour)
    for key in ("sensitivity_ge10mm", "sensitivity_all"):
        px, py = ax.px(operating["fp_per_image"], operating[key])
        d.ellipse([px - 8, py - 8, px + 8, py + 8], outline=COLOURS["black"], width=2)
    _legend(d, (330, 250), [(s[0], s[1]) for s in series] + [(f"circled: shipped p > {operating['probability']}",
                                                               COLOURS["black"])])
    d.text((310, 12), title, fill=COLOURS["black"], font=font(14), anchor="mt")
    img.save(path, optimize=True)
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1e3)
    return path


def reliability_plot(path: Path, bins: Sequence[dict], ece: float, n: int, title: str) -> Path:
    """Reliability diagram: fraction of candidates that are true hits per confidence bin (bars)."""
    img = Image.new("RGB", (520, 470), COLOURS["white"])
    ax = Axes(img, (80, 50, 490, 400), (0.0, 1.0), (0.0, 1.0))
    d = ax.draw
    ax.frame(np.linspace(0, 1, 11).round(1), np.linspace(0, 1, 11).round(1), "confidence (peak probability)",
             "fraction of candidates that hit")
    for b in bins:
        x0, y0 = ax.px(b["lo"] + 0.01, b["fraction_hit"])
        x1, y1 = ax.px(b["hi"] - 0.01, 0.0)
        d.rectangle([x0, y0, x1, y1], fill=COLOURS["blue"])
        d.text(((x0 + x1) / 2, y0 - 3), f"n={b['n']}", fill=COLOURS["black"], font=font(10), anchor="mb")
        cx, cy = ax.px(b["confidence"], b["fraction_hit"])
        d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=COLOURS["orange"])
    d.line([ax.px(0, 0), ax.px(1, 1)], fill=COLOURS["grey"], width=2)
    _legend(d, (95, 60), [("fraction of true hits per bin", COLOURS["blue"]),
                          ("at the bin's mean confidence", COLOURS["orange"]), ("perfect calibration", COLOURS["grey"])])
    d.text((285, 12), title, fill=COLOURS["black"], font=font(14), anchor="mt")
    d.text((285, 30), f"{n} candidates, expected calibration error {ece:.3f}", fill=COLOURS["black"],
           font=font(12), anchor="mt")
    img.save(path, optimize=True)
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1e3)
    return path


@dataclass
class Tile:
    """One gallery tile: a counts frame, outlines to draw on it (name -> frame-size mask), caption lines."""

    image: np.ndarray
    caption: Sequence[str]
    outlines: dict[str, np.ndarray] = field(default_factory=dict)


def _resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    idx_r = np.minimum((np.arange(size) + 0.5) * a.shape[0] / size, a.shape[0] - 1).astype(int)
    idx_c = np.minimum((np.arange(size) + 0.5) * a.shape[1] / size, a.shape[1] - 1).astype(int)
    return a[np.ix_(idx_r, idx_c)]


def _edge(mask: np.ndarray) -> np.ndarray:
    """Inner boundary (2 px) of a boolean mask."""
    inner = mask.copy()
    for _ in range(2):
        p = np.pad(inner, 1)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def render_tile(tile: Tile, size: int, caption_h: int) -> Image.Image:
    """Grey counts (divided by the 99.5th percentile, clipped) with coloured outlines and a caption."""
    img = tile.image.astype(np.float64)
    p = float(np.percentile(img, 99.5)) or 1.0
    grey = (255 * np.clip(_resize_nearest(img, size) / p, 0, 1)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for name, mask in tile.outlines.items():
        rgb[_edge(_resize_nearest(mask.astype(bool), size))] = COLOURS[name]
    out = Image.new("RGB", (size, size + caption_h), COLOURS["panel"])
    out.paste(Image.fromarray(rgb), (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(tile.caption):
        d.text((4, size + 3 + 14 * i), line, fill=COLOURS["white"], font=font(12))
    return out


def gallery(path: Path, tiles: Sequence[Tile], ncols: int, size: int, title: str,
            legend: Sequence[tuple[str, str]] = ()) -> Path:
    """Grid of :func:`render_tile` tiles under a title and a colour legend, saved as a palette PNG."""
    caption_h = 4 + 14 * max((len(t.caption) for t in tiles), default=1)
    nrows = -(-len(tiles) // ncols)
    head, gap = 44 if legend else 26, 4
    canvas = Image.new("RGB", (ncols * (size + gap) + gap, head + nrows * (size + caption_h + gap)), COLOURS["black"])
    d = ImageDraw.Draw(canvas)
    d.text((gap, 5), title, fill=COLOURS["white"], font=font(14))
    x = gap
    for text, colour in legend:
        d.rectangle([x, 28, x + 14, 36], fill=COLOURS[colour])
        d.text((x + 18, 25), text, fill=COLOURS["white"], font=font(12))
        x += 26 + int(d.textlength(text, font=font(12)))
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        canvas.paste(render_tile(t, size, caption_h), (gap + c * (size + gap), head + r * (size + caption_h + gap)))
    return _palette_png(canvas, path)
