"""Read NM thyroid images and their annotations from an Orthanc server.

``OrthancClient`` makes the few REST calls the export needs; :func:`pick_frame` reads the frame
to export from an NM (or old-gateway Secondary Capture) image; :func:`referenced_uids` lists
what an annotation points at. ``training`` never imports ``orthanc_plugin``: the frame choice
here is a short version of the plugin's (photopeak window first, then the anterior detector).
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
import requests
from pydicom.dataset import Dataset

from training.annotations import ConversionError

logger = logging.getLogger(__name__)

NM_IMAGE, SC_IMAGE = "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.7"
SEG, RTSTRUCT = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.481.3"
SERIES_MODALITIES = {"NM", "SEG", "RTSTRUCT"}  # old gateways send NM as SC with Modality NM
PHOTOPEAKS_KEV = (140.5, 159.0)  # Tc-99m, I-123


def pick_frame(ds: Dataset) -> tuple[np.ndarray, int]:
    """Return (float32 counts, 1-based frame number) of the anterior photopeak frame.

    Frames are scored by EnergyWindowVector (a window named photopeak, or containing 140.5 or
    159 keV) then DetectorVector (ViewCodeSequence saying anterior); ties go to the first frame.

    Raises
    ------
    ConversionError
        If the pixels cannot be decoded or have an unexpected shape.
    """
    try:
        array = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as error:  # pydicom raises several classes for undecodable data
        raise ConversionError(f"undecodable pixels: {error}") from error
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        array = array.mean(axis=-1)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    array = array.reshape(-1, *array.shape[-2:]) if array.ndim in (2, 3) else array
    if array.ndim != 3 or array.shape[0] != n_frames:
        raise ConversionError(f"undecodable pixels: array shape {array.shape} for {n_frames} frame(s)")
    peaks, anterior = set(), set()
    for number, item in enumerate(ds.get("EnergyWindowInformationSequence", []) or [], start=1):
        name = str(item.get("EnergyWindowName", "")).lower()
        ranges = [(r.get("EnergyWindowLowerLimit"), r.get("EnergyWindowUpperLimit"))
                  for r in item.get("EnergyWindowRangeSequence", []) or []]
        if "peak" in name or any(lo is not None and hi is not None and float(lo) <= p <= float(hi)
                                 for lo, hi in ranges for p in PHOTOPEAKS_KEV):
            peaks.add(number)
    for number, item in enumerate(ds.get("DetectorInformationSequence", []) or [], start=1):
        if any("anterior" in str(c.get("CodeMeaning", "")).lower() for c in item.get("ViewCodeSequence", []) or []):
            anterior.add(number)
    windows, detectors = _vector(ds, "EnergyWindowVector", n_frames), _vector(ds, "DetectorVector", n_frames)
    index = max(range(n_frames), key=lambda i: (int(windows[i]) in peaks, int(detectors[i]) in anterior, -i))
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return array[index] * slope + intercept, index + 1


def _vector(ds: Dataset, keyword: str, n_frames: int) -> list[int]:
    """A per-frame vector (EnergyWindowVector, DetectorVector), all ones when absent or malformed."""
    value = ds.get(keyword)
    values = [value] if isinstance(value, int) else list(value or [])
    try:
        numbers = [int(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    return numbers if len(numbers) == n_frames else [1] * n_frames


class OrthancClient:
    """The few Orthanc REST calls the export needs (basic authentication)."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 60.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        self.session.auth = (user, password)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        response.raise_for_status()
        return response

    def find_studies(self, query: dict[str, str]) -> list[str]:
        """Orthanc ids of the studies matching ``query`` (study level, case-insensitive)."""
        query = dict(query)
        if "Modality" in query:  # a series tag: Orthanc matches nothing with it at study level
            query.setdefault("ModalitiesInStudy", query.pop("Modality"))
        body = {"Level": "Study", "Query": query, "CaseSensitive": False, "Expand": False}
        return list(self._call("POST", "/tools/find", json=body).json())

    def lookup_study(self, study_instance_uid: str) -> str | None:
        """Orthanc id of a study by its StudyInstanceUID, or None."""
        answer = self._call("POST", "/tools/lookup", data=study_instance_uid).json()
        return next((a["ID"] for a in answer if a.get("Type") == "Study"), None)

    def study_tags(self, study_id: str) -> dict[str, str]:
        """The study's main DICOM tags (StudyInstanceUID, AccessionNumber...)."""
        return dict(self._call("GET", f"/studies/{study_id}").json().get("MainDicomTags", {}))

    def study_datasets(self, study_id: str) -> list[Dataset]:
        """Every instance of the study's NM, SEG and RTSTRUCT series, parsed."""
        datasets = []
        for series in self._call("GET", f"/studies/{study_id}/series").json():
            if series.get("MainDicomTags", {}).get("Modality", "").upper() not in SERIES_MODALITIES:
                continue
            for instance_id in series.get("Instances", []):
                data = self._call("GET", f"/instances/{instance_id}/file").content
                datasets.append(pydicom.dcmread(io.BytesIO(data)))
        return datasets


def referenced_uids(ds: Dataset) -> set[str]:
    """Every ReferencedSOPInstanceUID anywhere in ``ds``."""
    return {str(e.value) for e in ds.iterall() if e.keyword == "ReferencedSOPInstanceUID" and e.value}
