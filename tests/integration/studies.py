"""Synthetic studies for the integration tests, written as DICOM files the way modalities send them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from training import phantoms, synthetic_nm


def thyroid_nm(folder: Path, name: str, *, seed: int, matrix: int = 128, frames: str = "one",
               pixels: np.ndarray | None = None, upscale: int = 1, **options) -> tuple[Path, str]:
    """Write one NM thyroid study (one instance); returns (file, StudyInstanceUID).

    ``frames="two-windows"`` adds a scatter-window frame before the photopeak frame;
    ``pixels`` replaces the phantom's counts (e.g. all zeros); ``upscale`` repeats each pixel
    (128 x 8 = a 1024 matrix).
    """
    phantom = phantoms.generate(seed, matrix=matrix)
    image = phantom.image if pixels is None else pixels
    image = np.repeat(np.repeat(image, upscale, axis=0), upscale, axis=1)
    study_uid = generate_uid(entropy_srcs=[name, str(seed), "study"])
    options.setdefault("pixel_spacing_mm", phantom.stored_pixel_spacing_mm / upscale)
    if frames == "two-windows":
        scatter = (image * 0.3).astype(np.float32)
        stack = np.stack([scatter, image])
        ds = synthetic_nm.nm_dataset(stack, study_instance_uid=study_uid, patient_id=f"SYN-{name}",
                                     energy_windows=[("SCATTER", 110.0, 125.0), ("PHOTOPEAK", 126.0, 154.0)],
                                     **options)
    else:
        ds = synthetic_nm.nm_dataset(image, study_instance_uid=study_uid, patient_id=f"SYN-{name}", **options)
    return synthetic_nm.write(ds, folder / f"{name}.dcm"), study_uid


def jpeg2000_nm(folder: Path, name: str, *, seed: int) -> Path:
    """An NM thyroid file in JPEG 2000 lossless, encoded with Pillow's OpenJPEG (a modality's codec)."""
    import io

    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    path, _ = thyroid_nm(folder, name, seed=seed)
    ds = dcmread(path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns).astype(np.uint16)
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG2000", irreversible=False, no_jp2=True)
        encoded.append(buffer.getvalue())
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(path, enforce_file_format=True)
    return path


def truncated_pixels(source: Path, target: Path) -> Path:
    """Copy a DICOM file with its pixel data cut short (header intact): decodable by nobody."""
    import pydicom

    ds = pydicom.dcmread(source)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(target), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(target), "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(target), "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(target, enforce_file_format=True)
    return target
