"""The worker's invariants over a deterministic stand-in for Orthanc's REST API."""

from __future__ import annotations

import io

import numpy as np
import pytest

from orthanc_plugin.config import NodeConfig
from orthanc_plugin.models import ModelRegistry
from orthanc_plugin.pipelines import PIPELINES
from orthanc_plugin.rules import RulesHolder
from orthanc_plugin.state import CHECKPOINT_PROPERTY
from orthanc_plugin.worker import Worker
from training import phantoms, synthetic_nm

from .fake_orthanc import FakeOrthanc
from .onnx_factory import write_model

RULES = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "rules" / "default.json")


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    write_model(folder / "seg.onnx", size=128)
    write_model(folder / "nod.onnx", task="cold-nodule-detection", labels=["cold_nodule"], size=128)
    return folder


def _worker(api: FakeOrthanc, models_dir, **config) -> Worker:
    worker = Worker(api, NodeConfig(models_directory=str(models_dir), rules_file=RULES, **config),
                    ModelRegistry(models_dir, ["CPUExecutionProvider"]),
                    RulesHolder(RULES, known_pipelines=PIPELINES))
    worker._read_up_to = int(api.get_global(CHECKPOINT_PROPERTY, "0"))  # what start() does
    worker._saved_checkpoint = worker._read_up_to
    return worker


def _send(api: FakeOrthanc, seed: int, **options) -> str:
    image = options.pop("pixels", None)
    ds = synthetic_nm.nm_dataset(phantoms.generate(seed).image if image is None else image,
                                 patient_id=f"P{seed}", **options)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    api.store(buffer.getvalue())
    return ds.StudyInstanceUID


def test_checkpoint_waits_for_unstable_studies(models_dir):
    api = FakeOrthanc()
    worker = _worker(api, models_dir)
    first = _send(api, 1)
    second = _send(api, 2)
    api.make_stable(second)
    worker.poll_once()
    assert api.state(second)["state"] == "done"
    assert api.state(first)["state"] == "queued"
    # The first study is not stable yet: the checkpoint stays before its first change.
    assert api.globals.get(CHECKPOINT_PROPERTY, "0") == "0"
    api.make_stable(first)
    worker.poll_once()
    assert api.state(first)["state"] == "done"
    worker.poll_once()  # reads the changes of our own results: known, nothing to look up
    assert int(api.globals[CHECKPOINT_PROPERTY]) == len(api.changes)


def test_a_restart_redoes_nothing_and_our_outputs_trigger_nothing(models_dir):
    api = FakeOrthanc()
    study = _send(api, 3)
    api.make_stable(study)
    _worker(api, models_dir).poll_once()
    stored = len(api.posts)
    assert stored == 3  # SC, SEG, SR
    api.make_stable(study)  # STABLE_STUDY fires again after our results arrived
    api.globals.pop(CHECKPOINT_PROPERTY)  # and even a lost checkpoint
    restarted = _worker(api, models_dir)
    restarted.poll_once()
    assert len(api.posts) == stored
    assert len(api.state(study)["results"]) == 1


def test_a_bad_study_fails_alone_and_is_parked(models_dir):
    api = FakeOrthanc()
    bad = _send(api, 4, pixels=np.zeros((64, 64), np.float32))
    good = _send(api, 5)
    api.make_stable(bad)
    api.make_stable(good)
    worker = _worker(api, models_dir)
    worker.poll_once()
    state = api.state(bad)
    assert (state["state"], state["stage"]) == ("failed", "input")
    assert "no counts" in state["error"]
    assert api.state(good)["state"] == "done"
    # Parked: the next rounds leave it alone; an explicit re-run tries again.
    worker.poll_once()
    assert api.state(bad)["attempts"] == state["attempts"]
    worker.request_rerun(bad)
    worker.poll_once()
    assert api.state(bad)["state"] == "failed" and api.state(bad)["updated"] != state["updated"]


def test_transient_failures_are_retried_a_bounded_number_of_times(tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    api = FakeOrthanc()
    study = _send(api, 6)
    api.make_stable(study)
    worker = _worker(api, empty, max_attempts=2)
    worker.poll_once()
    assert (api.state(study)["state"], api.state(study)["attempts"]) == ("queued", 1)
    worker._not_before.clear()  # skip the retry delay
    worker.poll_once()
    state = api.state(study)
    assert (state["state"], state["attempts"], state["stage"]) == ("failed", 2, "model")
    assert int(api.globals[CHECKPOINT_PROPERTY]) == len(api.changes)


def test_other_modalities_are_skipped_with_the_reason(models_dir):
    from pydicom.data import get_testdata_file

    api = FakeOrthanc()
    api.store(open(get_testdata_file("CT_small.dcm"), "rb").read())
    study = next(iter(api.studies))
    api.make_stable(study)
    _worker(api, models_dir).poll_once()
    state = api.state(study)
    assert state["state"] == "skipped"
    assert state["reason"].startswith("no rule matched: CT series")
