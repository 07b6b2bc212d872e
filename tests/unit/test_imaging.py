"""numpy helpers: resampling keeps mean counts, components and contours are right on tiny arrays."""

import numpy as np

from orthanc_plugin.imaging import dilate, label_components, resample


def test_block_mean_shrink_and_bilinear_resize():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resample(image, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    grown = resample(np.ones((3, 5), np.float32), (7, 11))
    assert grown.shape == (7, 11)
    np.testing.assert_allclose(grown, 1.0, rtol=1e-6)


def test_eight_connected_components():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one component
    mask[4, 4] = True
    labels, count = label_components(mask)
    assert count == 2 and labels[0, 0] == labels[1, 1] != labels[4, 4]


def test_dilate_grows_a_square():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert dilate(mask, 1).sum() == 9
    assert dilate(mask, 2).sum() == 25


def _reference_components(mask: np.ndarray) -> np.ndarray:
    """Plain breadth-first 8-connected labelling, to check the vectorised one against."""
    seen = np.zeros(mask.shape, int)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        seen[start] = count
        stack = [start]
        while stack:
            r, c = stack.pop()
            for rr in range(max(r - 1, 0), min(r + 2, mask.shape[0])):
                for cc in range(max(c - 1, 0), min(c + 2, mask.shape[1])):
                    if mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = count
                        stack.append((rr, cc))
    return seen


def test_vectorised_labelling_matches_breadth_first_search():
    rng = np.random.default_rng(3)
    for _ in range(100):
        mask = rng.random((17, 23)) < rng.uniform(0.2, 0.7)
        labels, count = label_components(mask)
        reference = _reference_components(mask)
        assert count == reference.max()
        # Same partition: each of our labels pairs with exactly one reference label.
        assert len(set(zip(labels[mask], reference[mask]))) == count
        assert set(np.unique(labels[mask])) == set(range(1, count + 1))
