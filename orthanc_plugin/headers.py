"""The header the rules see, built from a pydicom dataset the way Orthanc simplifies tags.

Orthanc's ``GET /instances/{id}/tags?simplify`` gives keywords to strings (multi-valued values
joined with backslashes) and sequences as lists of dicts; tests and tools get the same shape here.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def _simplify(value: object) -> str:
    """A non-sequence element value as Orthanc's simplified JSON shows it."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_simplify(v) for v in value)
    if isinstance(value, BaseTag):
        return f"{value.group:04x},{value.element:04x}"
    return str(value)


def header_from_dataset(
    ds: Dataset, *, calling_ae: str | None = None, called_ae: str | None = None
) -> dict[str, object]:
    """Build the header dict the rules see from a pydicom dataset.

    Parameters
    ----------
    ds : pydicom.Dataset
        One instance of the series (pixel data is not read).
    calling_ae, called_ae : str or None
        AE titles to add as ``CallingAETitle`` / ``CalledAETitle``.

    Returns
    -------
    dict
        Keywords to strings (multi-valued joined with backslashes), sequences as lists of dicts;
        private or unknown tags keyed ``gggg,eeee``; PixelData and binary values skipped.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.Modality = "NM"; ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC"]
    >>> header_from_dataset(ds, calling_ae="GAMMA1")
    {'ImageType': 'ORIGINAL\\\\PRIMARY\\\\STATIC', 'Modality': 'NM', 'CallingAETitle': 'GAMMA1'}
    """
    header: dict[str, object] = {}
    for elem in ds:
        if elem.tag == 0x7FE00010 or elem.VR in _BINARY_VRS:
            continue
        key = elem.keyword or f"{elem.tag.group:04x},{elem.tag.element:04x}"
        if elem.VR == "SQ":
            header[key] = [header_from_dataset(item) for item in elem.value]
        else:
            header[key] = _simplify(elem.value)
    if calling_ae is not None:
        header["CallingAETitle"] = calling_ae
    if called_ae is not None:
        header["CalledAETitle"] = called_ae
    return header
