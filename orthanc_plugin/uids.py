"""Deterministic identities of our outputs.

Every UID is derived from (source SOP Instance UID, pipeline + variant, model versions, output
kind), so a re-run of the same work produces the same UIDs (Orthanc then keeps one copy) and a new
model version produces a new series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydicom.uid import generate_uid

OutputKind = Literal["sc", "seg", "sr"]

# Series numbers of our outputs: high enough to sort after the modality's own series.
SERIES_NUMBERS: dict[str, int] = {"sc": 9001, "seg": 9002, "sr": 9003}


@dataclass(frozen=True)
class OutputUids:
    """Identity of one output instance, handed to a writer."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int = 1


def work_key(source_sop_instance_uid: str, pipeline: str, variant: str,
             model_versions: Iterable[str]) -> str:
    """Return the text that identifies one unit of work (same text: same outputs)."""
    return "|".join([source_sop_instance_uid, pipeline, variant, *sorted(model_versions)])


def output_uids(key: str, kind: OutputKind) -> OutputUids:
    """Return the UIDs of the ``kind`` output of the work identified by ``key``.

    Examples
    --------
    >>> a = output_uids("1.2.3|thyroid||seg-1.0.0", "seg")
    >>> a == output_uids("1.2.3|thyroid||seg-1.0.0", "seg")
    True
    >>> a.series_instance_uid == output_uids("1.2.3|thyroid||seg-1.1.0", "seg").series_instance_uid
    False
    """
    if kind not in SERIES_NUMBERS:
        raise ValueError(f"output kind {kind!r} is not one of {sorted(SERIES_NUMBERS)}")
    return OutputUids(
        series_instance_uid=generate_uid(entropy_srcs=[key, kind, "series"]),
        sop_instance_uid=generate_uid(entropy_srcs=[key, kind, "instance"]),
        series_number=SERIES_NUMBERS[kind],
    )
