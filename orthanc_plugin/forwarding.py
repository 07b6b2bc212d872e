"""Forward results (or the whole study) to a PACS declared in Orthanc's DicomModalities.

Each send is an asynchronous Orthanc job (visible in Orthanc's /jobs); a failed job is resubmitted
up to the rule's ``retries``; the outcome is recorded in the study's state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import NodeConfig
from .state import OrthancCallError, now_iso

logger = logging.getLogger(__name__)


@dataclass
class _Send:
    study_id: str
    work_key: str
    destination: str
    resources: list[str]
    retries: int
    attempts: int
    job_id: str | None
    deadline: float


class Forwarder:
    """Submits C-STORE jobs and follows them to a final state."""

    def __init__(self, api, config: NodeConfig) -> None:
        self.api = api
        self.config = config
        self._sends: list[_Send] = []
        self._lock = threading.Lock()

    def submit(self, study_id: str, result: dict, forward) -> dict:
        """Start forwarding one result; returns the outcome record to store with the result."""
        resources = ([study_id] if forward.what == "study"
                     else [o["instance_id"] for o in result["outputs"].values()])
        send = _Send(study_id, result["work_key"], forward.destination, resources, forward.retries,
                     0, None, 0.0)
        outcome = self._start(send)
        if outcome["state"] == "pending":
            with self._lock:
                self._sends.append(send)
        return outcome

    def _start(self, send: _Send) -> dict:
        send.attempts += 1
        body = json.dumps({"Resources": send.resources, "Synchronous": False, "Asynchronous": True})
        try:
            answer = self.api.post(f"/modalities/{send.destination}/store", body)
        except OrthancCallError as error:
            return self._outcome(send, "failed", f"cannot submit to {send.destination!r}: {error}")
        send.job_id = answer["ID"]  # type: ignore[index]
        send.deadline = time.monotonic() + self.config.forward_timeout_seconds
        return self._outcome(send, "pending")

    @staticmethod
    def _outcome(send: _Send, state: str, error: str | None = None) -> dict:
        return {"destination": send.destination, "state": state, "job": send.job_id,
                "attempts": send.attempts, "error": error, "updated": now_iso()}

    def check(self, record: Callable[[str, str, dict], None]) -> None:
        """Follow submitted jobs; call ``record(study_id, work_key, outcome)`` on each final state."""
        with self._lock:
            sends = list(self._sends)
        for send in sends:
            try:
                job = self.api.get_json(f"/jobs/{send.job_id}")
            except OrthancCallError as error:
                job = {"State": "Failure", "ErrorDescription": str(error)}
            state = job.get("State")  # type: ignore[union-attr]
            if state == "Success":
                outcome = self._outcome(send, "done")
            elif state == "Failure" or time.monotonic() > send.deadline:
                reason = job.get("ErrorDescription") or "timed out"  # type: ignore[union-attr]
                if send.attempts <= send.retries:
                    logger.warning("study=%s: forward to %s failed (%s), retrying", send.study_id,
                                   send.destination, reason)
                    outcome = self._start(send)
                    if outcome["state"] == "pending":
                        continue
                else:
                    outcome = self._outcome(send, "failed", reason)
            else:
                continue
            with self._lock:
                self._sends.remove(send)
            logger.info("study=%s: forward to %s %s after %d attempt(s)", send.study_id,
                        send.destination, outcome["state"], send.attempts)
            record(send.study_id, send.work_key, outcome)

    def status(self) -> dict:
        """Number of sends still in flight."""
        with self._lock:
            return {"in_flight": len(self._sends)}
