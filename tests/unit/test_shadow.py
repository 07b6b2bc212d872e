"""Shadow comparisons: agreement figures on hand-made findings with known answers."""

import numpy as np
import pytest

from orthanc_plugin.findings import Findings, Lobe, Nodule
from orthanc_plugin.shadow import ShadowLedger, compare


def _mask(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((20, 20), bool)
    mask[rows, cols] = True
    return mask


def _findings(right: np.ndarray, nodules: list[tuple[float, float]]) -> Findings:
    lobe = Lobe("right", right, 1.0, 100.0, int(right.sum()), 5.0, None, None)
    found = tuple(Nodule(i + 1, "right", "middle", _mask(slice(0, 1), slice(0, 1)), centre, 4.0, None, 0.5, 0.9)
                  for i, centre in enumerate(nodules))
    return Findings("thyroid", "", 1, np.zeros((20, 20), np.float32), None, False, "anterior",
                    (lobe,), found, (), ())


def test_identical_findings_agree_fully():
    live = _findings(_mask(slice(2, 10), slice(2, 6)), [(5.0, 4.0)])
    assert compare(live, live) == {"gland_dice": 1.0, "lobe_dice": {"right": 1.0, "left": 1.0},
                                   "nodules_live": 1, "nodules_shadow": 1, "nodules_matched": 1,
                                   "nodule_agreement": 1.0}


def test_half_overlap_and_one_extra_candidate():
    live = _findings(_mask(slice(0, 4), slice(0, 4)), [(5.0, 4.0)])
    shadow = _findings(_mask(slice(0, 4), slice(2, 6)), [(5.5, 4.5), (15.0, 15.0)])
    result = compare(live, shadow)
    assert result["gland_dice"] == pytest.approx(0.5)
    assert (result["nodules_matched"], result["nodule_agreement"]) == (1, 0.5)


def test_ledger_means():
    ledger = ShadowLedger()
    ledger.add("next.onnx", "2.0.0", {"gland_dice": 0.9, "nodule_agreement": 1.0})
    ledger.add("next.onnx", "2.0.0", {"gland_dice": 0.7, "nodule_agreement": 0.5})
    assert ledger.summary() == [{"file": "next.onnx", "version": "2.0.0", "studies": 2,
                                 "mean_gland_dice": 0.8, "mean_nodule_agreement": 0.75}]
