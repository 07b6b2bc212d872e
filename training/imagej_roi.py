"""Read (and, for test data, write) ImageJ/Fiji ``.roi`` files and ROI Manager ``.zip`` sets.

The binary layout is ImageJ's (``ij/io/RoiDecoder.java``): a 64-byte big-endian header starting
with ``Iout``, then the vertex coordinates as 16-bit offsets from the bounding box (x values,
then y values), optionally followed by float32 absolute sub-pixel coordinates, then a second
64-byte header (``header2``) that points to the ROI's name (UTF-16BE).

Coordinates are ImageJ's: (0, 0) is the top-left corner of the top-left pixel, so pixel
(row r, column c) covers ``[c, c + 1) x [r, r + 1)``.

Examples
--------
>>> roi = ImageJRoi("rect", top=2, left=3, bottom=6, right=8, name="thyroid")
>>> decode(encode(roi)) == roi
True
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"Iout"
VERSION = 228
HEADER_SIZE = HEADER2_SIZE = 64
SUB_PIXEL_RESOLUTION = 128  # the options bit saying float coordinates follow the integer ones
# ImageJ's type codes (RoiDecoder): the byte at offset 6.
TYPES = {0: "polygon", 1: "rect", 2: "oval", 3: "line", 4: "freeline", 5: "polyline", 6: "noroi",
         7: "freehand", 8: "traced", 9: "angle", 10: "point"}
CODES = {name: code for code, name in TYPES.items()}
AREA_TYPES = ("polygon", "rect", "oval", "freehand", "traced")


class RoiFormatError(ValueError):
    """The bytes are not an ImageJ ROI this reader understands."""


@dataclass(frozen=True)
class ImageJRoi:
    """One decoded ImageJ ROI.

    ``kind`` is the ImageJ type name (see :data:`TYPES`); ``top/left/bottom/right`` the integer
    bounding box; ``xs``/``ys`` the absolute vertex coordinates (empty for rect and oval);
    ``position`` the 1-based stack slice it was drawn on (0: any); ``name`` as in the ROI
    Manager (empty when unnamed).
    """

    kind: str
    top: int
    left: int
    bottom: int
    right: int
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    name: str = ""
    position: int = 0
    composite: bool = False


def decode(data: bytes) -> ImageJRoi:
    """Decode one ``.roi`` file.

    Parameters
    ----------
    data : bytes
        The file's content.

    Returns
    -------
    ImageJRoi
        The ROI; types other than :data:`AREA_TYPES` decode too, converters refuse them.

    Raises
    ------
    RoiFormatError
        If the magic number is wrong or the file is shorter than its header says.
    """
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        raise RoiFormatError(f"not an ImageJ ROI: expected magic b'Iout' and {HEADER_SIZE} header bytes, "
                             f"got {data[:4]!r} and {len(data)} bytes")
    version, kind_code = struct.unpack_from(">hB", data, 4)
    top, left, bottom, right, n = struct.unpack_from(">hhhhH", data, 8)
    shape_size = struct.unpack_from(">i", data, 36)[0]
    options = struct.unpack_from(">h", data, 50)[0]
    position = struct.unpack_from(">i", data, 56)[0] if version >= 218 else 0
    kind = TYPES.get(kind_code, f"unknown type {kind_code}")
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    if kind not in ("rect", "oval") and shape_size == 0 and n:
        end = HEADER_SIZE + 4 * n
        if len(data) < end:
            raise RoiFormatError(f"truncated ROI: {n} vertices need {end} bytes, got {len(data)}")
        offsets = struct.unpack_from(f">{2 * n}h", data, HEADER_SIZE)
        xs = tuple(float(left + v) for v in offsets[:n])
        ys = tuple(float(top + v) for v in offsets[n:])
        if options & SUB_PIXEL_RESOLUTION and version >= 222 and len(data) >= end + 8 * n:
            floats = struct.unpack_from(f">{2 * n}f", data, end)
            xs, ys = tuple(floats[:n]), tuple(floats[n:])
    return ImageJRoi(kind, top, left, bottom, right, xs, ys, _name(data), max(position, 0),
                     composite=shape_size > 0)


def _name(data: bytes) -> str:
    """Return the ROI name stored after header2, or '' when there is none."""
    offset = struct.unpack_from(">i", data, 60)[0]
    if offset <= 0 or offset + HEADER2_SIZE > len(data):
        return ""
    name_offset, name_length = struct.unpack_from(">ii", data, offset + 16)
    if name_offset <= 0 or name_length <= 0 or name_offset + 2 * name_length > len(data):
        return ""
    return data[name_offset:name_offset + 2 * name_length].decode("utf-16-be", errors="replace")


def encode(roi: ImageJRoi) -> bytes:
    """Encode a polygon-like, rect or oval ROI as ImageJ writes it (inverse of :func:`decode`).

    Parameters
    ----------
    roi : ImageJRoi
        For ``rect``/``oval`` only the bounding box is written; for polygon, freehand and traced
        ROIs the vertices (float coordinates are added when any is not an integer).

    Returns
    -------
    bytes
        The ``.roi`` file content.

    Raises
    ------
    ValueError
        If the type cannot be written here, or vertices are missing or out of the 16-bit range.
    """
    if roi.kind not in AREA_TYPES:
        raise ValueError(f"cannot encode ROI type {roi.kind!r}: expected one of {AREA_TYPES}")
    n = 0 if roi.kind in ("rect", "oval") else len(roi.xs)
    if roi.kind not in ("rect", "oval") and (n < 3 or len(roi.ys) != n):
        raise ValueError(f"a {roi.kind} ROI needs at least 3 (x, y) vertices, got {len(roi.xs)} x and {len(roi.ys)} y")
    sub_pixel = any(v != int(v) for v in (*roi.xs, *roi.ys))
    header = bytearray(HEADER_SIZE)
    header[:4] = MAGIC
    struct.pack_into(">hBB", header, 4, VERSION, CODES[roi.kind], 0)
    struct.pack_into(">hhhhH", header, 8, roi.top, roi.left, roi.bottom, roi.right, n)
    struct.pack_into(">h", header, 50, SUB_PIXEL_RESOLUTION if sub_pixel else 0)
    struct.pack_into(">i", header, 56, roi.position)
    body = b""
    if n:
        try:
            body = struct.pack(f">{2 * n}h", *(int(x) - roi.left for x in roi.xs),
                               *(int(y) - roi.top for y in roi.ys))
        except struct.error as error:
            raise ValueError(f"vertex offsets exceed ImageJ's 16-bit range: {error}") from error
        if sub_pixel:
            body += struct.pack(f">{2 * n}f", *roi.xs, *roi.ys)
    header2_offset = HEADER_SIZE + len(body)
    struct.pack_into(">i", header, 60, header2_offset)
    header2 = bytearray(HEADER2_SIZE)
    name = roi.name.encode("utf-16-be")
    struct.pack_into(">ii", header2, 16, header2_offset + HEADER2_SIZE if name else 0, len(name) // 2)
    return bytes(header) + body + bytes(header2) + name


def read_rois(path: str | Path) -> list[tuple[str, ImageJRoi]]:
    """Read a ``.roi`` file or a ROI Manager ``.zip`` of them.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    list of (str, ImageJRoi)
        (entry name without ``.roi``, ROI) pairs, in file order.

    Raises
    ------
    RoiFormatError
        If the file (or a zip entry) is not an ImageJ ROI, or the zip is unreadable.
    """
    path = Path(path)
    if path.suffix.lower() != ".zip":
        return [(path.stem, decode(path.read_bytes()))]
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [e for e in archive.namelist() if e.lower().endswith(".roi")]
            return [(Path(e).stem, decode(archive.read(e))) for e in entries]
    except zipfile.BadZipFile as error:
        raise RoiFormatError(f"{path.name} is not a readable zip: {error}") from error
