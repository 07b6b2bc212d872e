"""The worker thread: Orthanc's change log is the queue, a global property the checkpoint.

``wake()`` is all that Orthanc's callback thread ever calls. The worker reads ``/changes`` from
the checkpoint, collects touched studies, processes each once it is stable, stores the study's
state, and only then moves the checkpoint past the changes that study covered. Killing Orthanc
at any moment therefore loses nothing, and re-reading changes repeats nothing (work keys).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from . import study as study_work
from .config import NodeConfig
from .forwarding import Forwarder
from .metrics import ProcessingHistogram, node_metrics
from .models import ModelRegistry
from .rules import RulesHolder
from .shadow import ShadowLedger
from .state import (CHECKPOINT_PROPERTY, METADATA_NAME, PERMANENT, PINS_PROPERTY, OrthancCallError,
                    StudyState, audit, fail_stage, new_state, now_iso, parse_state)
from .study import OrthancApi

logger = logging.getLogger(__name__)

STUDY_CHANGES = {"NewStudy", "StableStudy"}
RETRY_DELAY_SECONDS = 5.0


class Worker:
    """Owns the processing thread; created and started by entry.py."""

    def __init__(self, api: OrthancApi, config: NodeConfig, registry: ModelRegistry,
                 rules_holder: RulesHolder, *,
                 publish_metrics: Callable[[dict[str, float]], None] | None = None) -> None:
        self.api = api
        self.config = config
        self.registry = registry
        self.rules = rules_holder
        self.forwarder = Forwarder(api, config)
        self.shadow_ledger = ShadowLedger()
        self.histogram = ProcessingHistogram()
        self._publish_metrics = publish_metrics
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: dict[str, int] = {}  # study id -> first change sequence not yet covered
        self._not_before: dict[str, float] = {}  # study id -> monotonic time of the next attempt
        self._reruns: dict[str, dict] = {}  # study id -> {"versions": {task: version}, "by": who}
        self._own_instances: set[str] = set()  # results we stored, whose changes need no lookup
        self._stable_at: dict[str, float] = {}  # study id -> wall time Orthanc called it stable
        # The checkpoint is read in start(): Orthanc's database is not open while plugins load.
        self._read_up_to = 0
        self._saved_checkpoint = 0
        self._last_state: dict[str, str] = {}

    # -- control, callable from any thread -------------------------------------------------
    def start(self) -> None:
        """Start the thread (after Orthanc has started: the REST API must be up)."""
        self._read_up_to = int(self.api.get_global(CHECKPOINT_PROPERTY, "0") or 0)
        self._saved_checkpoint = self._read_up_to
        self.registry.pins.update(json.loads(self.api.get_global(PINS_PROPERTY, "{}") or "{}"))
        self._thread = threading.Thread(target=self._loop, name="ai-node-worker", daemon=True)
        self._thread.start()
        logger.info("worker started at change %d", self._read_up_to)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current study and return."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Tell the worker that something changed; cheap, never blocks."""
        self._wake.set()

    def mark_stable(self, study_id: str) -> None:
        """Record when Orthanc called a study stable (for the stable-to-stored timing) and wake."""
        with self._lock:
            if len(self._stable_at) > 10_000:  # studies never processed (deleted): forget them
                self._stable_at.clear()
            self._stable_at.setdefault(study_id, time.time())
        self._wake.set()

    def request_rerun(self, study_id: str, *, versions: Mapping[str, str] | None = None,
                      by: str = "rest") -> None:
        """Re-process a study even if it is done or parked; ``versions``: {task: model version}."""
        with self._lock:
            self._reruns[study_id] = {"versions": dict(versions or {}), "by": by}
        self._wake.set()

    def choose_model(self, action: str, target: str) -> dict[str, str]:
        """Promote a model file or roll a task back one version; the choice survives restarts."""
        outcome = self.registry.promote(target) if action == "promote" else self.registry.rollback(target)
        self.api.set_global(PINS_PROPERTY, json.dumps(self.registry.pins))
        return outcome

    def status(self) -> dict:
        """Queue depth and counts by state (studies seen since this start)."""
        with self._lock:  # _pending belongs to the worker thread: only len() and `in` here
            depth = len(self._pending) + sum(1 for study in self._reruns if study not in self._pending)
        return {"queue_depth": depth, "checkpoint": self._saved_checkpoint,
                "states": dict(Counter(self._last_state.values())),
                "forwarding": self.forwarder.status()}

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the loop must survive anything; the next round retries
                logger.exception("worker round failed")
            self._wake.wait(self.config.poll_seconds)
            self._wake.clear()

    def poll_once(self) -> None:
        """One round: reload models and rules, read changes, process ready studies, checkpoint."""
        self.registry.refresh()
        self.rules.reload_if_changed()
        self._read_changes()
        with self._lock:
            reruns, self._reruns = self._reruns, {}
        for study_id, request in sorted(reruns.items()):
            self._process(study_id, trigger="rerun", **request)
        for study_id in sorted(self._pending, key=self._pending.get):  # type: ignore[arg-type]
            if self._stop.is_set():
                break
            if time.monotonic() >= self._not_before.get(study_id, 0) and self._is_ready(study_id):
                if self._process(study_id, trigger="stable"):
                    self._pending.pop(study_id, None)
                    self._not_before.pop(study_id, None)
        self.forwarder.check(self._record_forward)
        self._save_checkpoint()
        if self._publish_metrics is not None:
            self._publish_metrics(self.metrics())

    def metrics(self) -> dict[str, float]:
        """The figures published through Orthanc's Prometheus endpoint."""
        served = {task: model.spec.version for task, model in self.registry.snapshot().items()}
        status = self.status()
        return node_metrics(status["queue_depth"], status["states"], served, self.histogram)

    def _read_changes(self) -> None:
        while True:
            page = self.api.get_json(f"/changes?since={self._read_up_to}&limit=500")
            for change in page["Changes"]:  # type: ignore[index]
                study_id = self._study_of(change)
                if study_id is not None and study_id not in self._pending:
                    self._pending[study_id] = int(change["Seq"])
                    self._mark_queued(study_id)
            self._read_up_to = max(self._read_up_to, int(page["Last"]))  # type: ignore[index]
            if page["Done"]:  # type: ignore[index]
                return

    def _mark_queued(self, study_id: str) -> None:
        """Show a new study as queued until it is stable and processed."""
        try:
            if self.load_state(study_id) is None:
                state = new_state()
                audit(state, "queued", by="change-log")
                self._save(study_id, state)
        except OrthancCallError as error:  # deleted meanwhile: nothing to show
            logger.info("study=%s: cannot mark queued: %s", study_id, error)

    def _study_of(self, change: dict) -> str | None:
        if change["ChangeType"] in STUDY_CHANGES:
            return change["ID"]
        if change["ChangeType"] == "NewInstance":
            if change["ID"] in self._own_instances:
                self._own_instances.discard(change["ID"])
                return None
            try:
                return self.api.get_json(f"/instances/{change['ID']}/study")["ID"]  # type: ignore[index]
            except OrthancCallError as error:
                if error.not_found:  # deleted since: nothing to do
                    return None
                raise
        return None

    def _is_ready(self, study_id: str) -> bool:
        """Stable for Orthanc, or (after a restart) untouched for StableAgeSeconds."""
        try:
            info = self.api.get_json(f"/studies/{study_id}")
        except OrthancCallError as error:
            if error.not_found:
                self._pending.pop(study_id, None)
                return False
            raise
        if info.get("IsStable"):  # type: ignore[union-attr]
            return True
        return _age_seconds(info.get("LastUpdate", "")) >= self.config.stable_age_seconds  # type: ignore[union-attr]

    def _save_checkpoint(self) -> None:
        covered = min(self._pending.values()) - 1 if self._pending else self._read_up_to
        if covered != self._saved_checkpoint:
            self.api.set_global(CHECKPOINT_PROPERTY, str(covered))
            self._saved_checkpoint = covered

    # -- one study -------------------------------------------------------------------------
    def load_state(self, study_id: str) -> dict | None:
        """The stored state of a study, or None."""
        try:
            return parse_state(self.api.get_bytes(f"/studies/{study_id}/metadata/{METADATA_NAME}"))
        except OrthancCallError:
            return None

    def _save(self, study_id: str, state: dict) -> None:
        state["updated"] = now_iso()
        self.api.put(f"/studies/{study_id}/metadata/{METADATA_NAME}", json.dumps(state))
        with self._lock:
            self._last_state[study_id] = state["state"]

    def _process(self, study_id: str, *, trigger: str, versions: Mapping[str, str] | None = None,
                 by: str = "change-log") -> bool:
        """Process a study; True when it reached a final state (done, skipped, parked failed)."""
        state = self.load_state(study_id) or new_state()
        with self._lock:
            stable_at = self._stable_at.pop(study_id, None)
        if trigger == "rerun":
            state["attempts"] = 0
            audit(state, "rerun-requested", by=by, versions=dict(versions or {}))
        elif state["state"] == StudyState.FAILED.value and state["attempts"] >= self.config.max_attempts:
            return True  # parked: only an explicit re-run touches it again
        try:
            models = self.registry.snapshot(versions)  # in-flight work keeps these versions
            items, headers = study_work.plan(self.api, study_id, self.rules.current)
            if not items:
                reason = study_work.skip_reason(self.rules.current, headers)
                if (trigger == "rerun" or state["state"] != StudyState.SKIPPED.value
                        or state.get("reason") != reason):
                    state.update(state=StudyState.SKIPPED.value, reason=reason, error=None, stage=None)
                    audit(state, "skipped", by=by, reason=reason)
                    self._save(study_id, state)
                return True
            todo = study_work.pending_items(items, state, models)
            if not todo and trigger != "rerun":
                return True  # our own results arriving, or STABLE_STUDY firing again
            state.update(state=StudyState.RUNNING.value, trigger=trigger, error=None, stage=None,
                         attempts=state["attempts"] + 1, started=now_iso())
            audit(state, "started", by=by, trigger=trigger, rules=sorted({i.rule.name for i in todo}),
                  models={task: m.spec.version for task, m in models.items()})
            self._save(study_id, state)
            shadows = self.registry.shadows()
            for item in todo:
                result = study_work.run_item(self.api, item, models, shadows=shadows,
                                             calibration_mm_per_pixel=self.config.calibration_mm_per_pixel)
                self._own_instances.update(o["instance_id"] for o in result["outputs"].values())
                self.histogram.observe(item.rule.pipeline, result["total_ms"] / 1000.0)
                for comparison in result["shadow"]:
                    self.shadow_ledger.add(comparison["file"], comparison["version"], comparison)
                study_work.supersede(state["results"], result)
                state["results"].append(result)
                if item.rule.forward is not None:
                    result["forward"] = self.forwarder.submit(study_id, result, item.rule.forward)
                self._save(study_id, state)
            state.update(state=StudyState.DONE.value, reason=None)
            if stable_at is not None:
                state["stable_to_stored_ms"] = round((time.time() - stable_at) * 1000.0, 1)
            audit(state, "done", results=len(todo),
                  total_ms=round(sum(r["total_ms"] for r in state["results"][-len(todo):]), 1))
            self._save(study_id, state)
            logger.info("study=%s done: %d result(s)", study_id, len(todo))
            return True
        except Exception as error:  # a bad study fails alone
            return self._fail(study_id, state, error)

    def _fail(self, study_id: str, state: dict, error: Exception) -> bool:
        stage = fail_stage(error)
        final = isinstance(error, PERMANENT) or state["attempts"] >= self.config.max_attempts
        if isinstance(error, PERMANENT):
            state["attempts"] = max(state["attempts"], self.config.max_attempts)
        log = logger.warning if isinstance(error, PERMANENT) else logger.exception
        log("study=%s failed at %s (attempt %d): %s", study_id, stage.value, state["attempts"], error)
        state.update(state=StudyState.FAILED.value if final else StudyState.QUEUED.value,
                     error=f"{type(error).__name__}: {error}", stage=stage.value)
        audit(state, "failed" if final else "retry", stage=stage.value, error=state["error"],
              attempt=state["attempts"])
        try:
            self._save(study_id, state)
        except Exception:
            logger.exception("study=%s: could not record the failure", study_id)
            final = False
        if not final:
            self._not_before[study_id] = time.monotonic() + RETRY_DELAY_SECONDS
            self._pending.setdefault(study_id, self._read_up_to)  # a failed re-run is retried too
        return final

    def _record_forward(self, study_id: str, work_key: str, outcome: dict) -> None:
        state = self.load_state(study_id)
        if state is None:
            return
        for result in state["results"]:
            if result["work_key"] == work_key:
                result["forward"] = outcome
        audit(state, "forward", destination=outcome["destination"], outcome=outcome["state"],
              attempts=outcome["attempts"], error=outcome["error"])
        self._save(study_id, state)


def _age_seconds(last_update: str) -> float:
    """Seconds since Orthanc's LastUpdate (ISO basic, e.g. 20261204T195300); 0 if unreadable.

    Orthanc writes local time on some builds and UTC on others: take the more recent reading.
    """
    try:
        naive = dt.datetime.strptime(last_update[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return 0.0
    as_utc = naive.replace(tzinfo=dt.timezone.utc).timestamp()
    as_local = naive.timestamp()
    return time.time() - max(as_utc, as_local)
