"""Choosing the frame and the view from the NM header; clear errors for unusable pixels."""

from __future__ import annotations

import numpy as np
import pytest

from orthanc_plugin.errors import InputError
from orthanc_plugin.nm_frames import select_frame
from training import synthetic_nm

RNG = np.random.default_rng(7)


def _image(value: float = 50.0) -> np.ndarray:
    return RNG.poisson(value, (64, 64)).astype(np.float32)


def test_single_frame_anterior():
    frame = select_frame(synthetic_nm.nm_dataset(_image(), pixel_spacing_mm=1.5))
    assert frame.frame_number == 1 and frame.view == "anterior"
    assert frame.pixel_spacing_mm == (1.5, 1.5)
    assert frame.warnings == ()


def test_photopeak_window_is_chosen_over_scatter():
    photopeak, scatter = _image(80), _image(10)
    ds = synthetic_nm.nm_dataset(np.stack([scatter, photopeak]),
                                 energy_windows=[("SCATTER", 110.0, 125.0), ("PHOTOPEAK", 126.0, 154.0)])
    frame = select_frame(ds)
    assert frame.frame_number == 2
    np.testing.assert_array_equal(frame.pixels, photopeak)


def test_anterior_detector_is_chosen_and_view_comes_from_the_header():
    posterior, anterior = _image(30), _image(60)
    ds = synthetic_nm.nm_dataset(np.stack([posterior, anterior]), detectors_views=["posterior", "anterior"])
    frame = select_frame(ds)
    assert (frame.frame_number, frame.view) == (2, "anterior")


def test_posterior_view():
    assert select_frame(synthetic_nm.nm_dataset(_image(), view="posterior")).view == "posterior"


def test_missing_spacing_is_a_warning_not_an_error():
    frame = select_frame(synthetic_nm.nm_dataset(_image(), pixel_spacing_mm=None))
    assert frame.pixel_spacing_mm is None
    assert any("PixelSpacing" in warning for warning in frame.warnings)


def test_old_gateway_secondary_capture_is_read():
    grey = (RNG.random((64, 64)) * 255).astype(np.uint8)
    frame = select_frame(synthetic_nm.secondary_capture_nm(grey))
    assert frame.pixels.shape == (64, 64)


@pytest.mark.parametrize("build, message", [
    (lambda: synthetic_nm.nm_dataset(np.zeros((64, 64), np.float32)), "no counts"),
    (lambda: synthetic_nm.nm_dataset(_image()[:8, :8]), "outside 16..4096"),
])
def test_unusable_pixels_raise_input_error(build, message):
    with pytest.raises(InputError, match=message):
        select_frame(build())


def test_truncated_pixel_data_says_cannot_decode():
    ds = synthetic_nm.nm_dataset(_image())
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(InputError, match="cannot decode pixel data"):
        select_frame(ds)
