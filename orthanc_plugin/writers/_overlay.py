"""Pixels of the overlay: the source frame in grey, outlines, labels, legend and disclaimer banner.

Pure Pillow + numpy, no DICOM: :func:`render` returns an RGB array that ``sc.py`` wraps in a
Secondary Capture. Only Pillow's bundled font is used (ASCII text: it has no superscripts).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from orthanc_plugin import DISCLAIMER
from orthanc_plugin.findings import Findings, Nodule
from orthanc_plugin.writers._common import LOBE_COLOURS, NODULE_COLOUR, lobe_values

logger = logging.getLogger(__name__)

IMAGE_HEIGHT = 512
PANEL_WIDTH = 500
BANNER_HEIGHT = 46
MARGIN = 14
LINE_GAP = 4
WHITE, GREY, WARN = (240, 240, 240), (165, 165, 165), (255, 220, 60)
BANNER_RED, PANEL_BG = (190, 0, 0), (28, 28, 32)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    """Return Pillow's bundled font at ``size`` px (bitmap default on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _height(font: Font) -> int:
    """Return the height of a line of text in ``font`` (ascender to descender)."""
    return int(font.getbbox("Hg")[3])


@dataclass(frozen=True)
class _Line:
    """One line of the legend."""

    text: str
    colour: tuple[int, int, int] = WHITE
    size: int = 17
    swatch: tuple[int, int, int] | None = None
    gap: int = 0  # extra space above


def render(findings: Findings) -> np.ndarray:
    """Return the overlay of ``findings`` as an RGB uint8 array (H, W, 3).

    Parameters
    ----------
    findings : Findings
        Source frame, masks, measurements and models to show.

    Returns
    -------
    numpy.ndarray
        About 512 px of image (plus banner) tall; the legend panel on the right.
    """
    frame = _grey(findings.image)
    scale = IMAGE_HEIGHT / frame.shape[0]
    size = (max(1, round(frame.shape[1] * scale)), IMAGE_HEIGHT)
    picture = Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for lobe in findings.lobes:
        _outline(picture, lobe.mask, LOBE_COLOURS[lobe.side], 3)
    for nodule in findings.nodules:
        _outline(picture, nodule.mask, NODULE_COLOUR, 2)
    for lobe in findings.lobes:
        _side_label(draw, lobe.mask, lobe.side, findings.view, scale, size[0])
    for nodule in findings.nodules:
        _nodule_label(draw, nodule, scale, size[0])
    draw.text((8, 6), f"{findings.view.upper()} view, frame {findings.frame_number}",
              font=_font(16), fill=WHITE, stroke_width=2, stroke_fill=(0, 0, 0))

    lines = _wrap(_legend(findings), PANEL_WIDTH - 2 * MARGIN - 22)
    legend_height = sum(_height(_font(line.size)) + LINE_GAP + line.gap for line in lines) + 2 * MARGIN
    height = BANNER_HEIGHT + max(IMAGE_HEIGHT, legend_height)
    canvas = Image.new("RGB", (size[0] + PANEL_WIDTH, height), PANEL_BG)
    canvas.paste(picture, (0, BANNER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    _banner(draw, canvas.width)
    y = BANNER_HEIGHT + MARGIN
    x = size[0] + MARGIN
    for line in lines:
        font = _font(line.size)
        y += line.gap
        if line.swatch is not None:
            draw.rectangle((x, y + 3, x + 14, y + 17), fill=line.swatch)
            draw.text((x + 22, y), line.text, font=font, fill=line.colour)
        else:
            draw.text((x, y), line.text, font=font, fill=line.colour)
        y += _height(font) + LINE_GAP
    return np.asarray(canvas, dtype=np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    """Window counts from 0 to the 99.5th percentile into uint8 grey."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    if top <= 0:
        top = float(values.max()) if values.max() > 0 else 1.0
    return (np.clip(values / top, 0, 1) * 255).astype(np.uint8)


def _outline(picture: Image.Image, mask: np.ndarray, colour: tuple[int, int, int],
             width: int) -> None:
    """Paint the smoothed outline of ``mask`` (scaled to the picture) ``width`` px thick."""
    soft = Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(picture.size,
                                                                    Image.Resampling.BILINEAR)
    inside = np.asarray(soft) >= 128
    eroded = inside.copy()
    for _ in range(width):
        shrunk = eroded.copy()
        shrunk[1:, :] &= eroded[:-1, :]
        shrunk[:-1, :] &= eroded[1:, :]
        shrunk[:, 1:] &= eroded[:, :-1]
        shrunk[:, :-1] &= eroded[:, 1:]
        eroded = shrunk
    pixels = np.array(picture)
    pixels[inside & ~eroded] = colour
    picture.paste(Image.fromarray(pixels))


def _bbox(mask: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """Return (left, top, right, bottom) of ``mask`` in picture pixels."""
    rows, cols = np.nonzero(mask)
    return (cols.min() * scale, rows.min() * scale, (cols.max() + 1) * scale,
            (rows.max() + 1) * scale)


def _side_label(draw: ImageDraw.ImageDraw, mask: np.ndarray, side: str, view: str,
                scale: float, width_px: int) -> None:
    """Write "R" or "L" beside the lobe, on the patient's side of the picture."""
    left, top, right, bottom = _bbox(mask, scale)
    font = _font(30)
    on_image_left = (side == "right") == (view != "posterior")
    text = "R" if side == "right" else "L"
    width = draw.textlength(text, font=font)
    x = left - width - 12 if on_image_left else right + 12
    x = min(max(x, 4), width_px - width - 4)
    y = (top + bottom) / 2 - _height(font) / 2
    draw.text((x, y), text, font=font, fill=LOBE_COLOURS[side], stroke_width=3,
              stroke_fill=(0, 0, 0))


def _nodule_label(draw: ImageDraw.ImageDraw, nodule: Nodule, scale: float, width_px: int) -> None:
    """Write the nodule's number just above and right of its outline."""
    left, top, right, _ = _bbox(nodule.mask, scale)
    font = _font(22)
    x = min(right + 2, width_px - 20)
    y = max(top - _height(font), 2)
    draw.text((x, y), str(nodule.number), font=font, fill=NODULE_COLOUR, stroke_width=3,
              stroke_fill=(0, 0, 0))


def _banner(draw: ImageDraw.ImageDraw, width: int) -> None:
    """Draw the red disclaimer banner across the top."""
    draw.rectangle((0, 0, width, BANNER_HEIGHT - 1), fill=BANNER_RED)
    font = _font(22)
    text = DISCLAIMER.upper()
    x = max(8, (width - draw.textlength(text, font=font)) / 2)
    draw.text((x, (BANNER_HEIGHT - _height(font)) / 2), text, font=font, fill=WARN)


def _num(value: float, digits: int) -> str:
    """Return ``value`` with ``digits`` decimals, or "n/a" when it is not a finite number."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _size(value: float, unit: str, calibrated: bool) -> str:
    """Return an area or length with its unit, flagged "(uncal.)" when in uncalibrated mm."""
    if unit == "mm2":
        text = f"{_num(value / 100, 1)} cm2"
    elif unit == "mm":
        text = f"{_num(value, 0)} mm"
    else:
        text = f"{_num(value, 0)} px"
    return text if calibrated or unit not in ("mm", "mm2") else f"{text} (uncal.)"


def _nodule_size(nodule: Nodule, calibrated: bool) -> str:
    """Return a nodule diameter with its unit."""
    if nodule.diameter_mm is None:
        return f"{_num(nodule.diameter_px, 0)} px"
    return f"{_num(nodule.diameter_mm, 0)} mm" + ("" if calibrated else " (uncal.)")


def _legend(findings: Findings) -> list[_Line]:
    """Return the lines of the legend panel."""
    lines = [_Line(f"AI {findings.pipeline} analysis", size=24),
             _Line(f"{findings.view.capitalize()} view, frame {findings.frame_number}"
                   + (f", {findings.variant}" if findings.variant else ""), GREY, 15),
             _Line("LOBES", GREY, 15, gap=10)]
    for side in ("right", "left"):
        lobe = findings.lobe(side)
        if lobe is None:
            lines.append(_Line(f"{side.capitalize()} lobe: not found", WARN,
                               swatch=LOBE_COLOURS[side]))
            continue
        values = lobe_values(findings, lobe)
        lines.append(_Line(f"{side.capitalize()} lobe:  {_num(values['count_share'][0], 1)} % "
                           "of counts", swatch=LOBE_COLOURS[side]))
        area = _size(*values["lobe_area"], findings.calibrated)
        length = _size(*values["lobe_length"], findings.calibrated)
        lines.append(_Line(f"      area {area},  length {length}", size=16))
    ratio = findings.measurement("thyroid_to_background_ratio")
    lines.append(_Line("Thyroid-to-background ratio:  "
                       + (_num(ratio.value, 1) if ratio else "n/a"), gap=4))
    if findings.pixel_spacing_mm is None:
        lines.append(_Line("Sizes in pixels: the image gives no pixel spacing", WARN, 15))
    elif not findings.calibrated:
        lines.append(_Line("Sizes UNCALIBRATED (stored pixel spacing, not patient-plane "
                           "size): compare ratios, not mm", WARN, 15))
    lines.append(_Line(f"COLD-NODULE CANDIDATES ({len(findings.nodules)})", GREY, 15, gap=10))
    for n in findings.nodules:
        where = "isthmus" if n.lobe == "isthmus" else f"{n.lobe} lobe"
        lines.append(_Line(f"{n.number}.  {where}, {n.pole} pole, "
                           f"{_nodule_size(n, findings.calibrated)}", NODULE_COLOUR))
        lines.append(_Line(f"      nodule/parenchyma {_num(n.nodule_to_parenchyma_ratio, 2)},  "
                           f"confidence {_num(n.confidence, 2)}", size=16))
    if not findings.nodules:
        lines.append(_Line("none found"))
    lines.append(_Line("Candidates are sensitive by design: check each one.", GREY, 14))
    lines.append(_Line("MODELS", GREY, 15, gap=10))
    lines.extend(_Line(f"{m.name} {m.version}  (sha256 {m.sha256[:12]})", size=15)
                 for m in findings.models)
    if findings.warnings:
        lines.append(_Line("WARNINGS", WARN, 15, gap=10))
        lines.extend(_Line(w, WARN, 15) for w in findings.warnings)
    return lines


def _wrap(lines: list[_Line], width: int) -> list[_Line]:
    """Split every line longer than ``width`` px at spaces (continuations indented)."""
    wrapped: list[_Line] = []
    for line in lines:
        font = _font(line.size)
        indent = " " * (len(line.text) - len(line.text.lstrip(" ")))
        pieces: list[str] = []
        current = indent
        for word in line.text.split():
            candidate = f"{current}{word}" if current.strip() == "" else f"{current} {word}"
            if current.strip() and font.getlength(candidate) > width:
                pieces.append(current)
                current = f"{indent}    {word}"
            else:
                current = candidate
        pieces.append(current)
        for i, piece in enumerate(pieces):
            wrapped.append(_Line(piece, line.colour, line.size,
                                 line.swatch if i == 0 else None, line.gap if i == 0 else 0))
    return wrapped
