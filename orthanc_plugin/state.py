"""Per-study state, stored as JSON in one Orthanc metadata entry on the study.

Orthanc keeps it in its database, so it survives restarts, is visible over REST
(``GET /studies/{id}/metadata/AiNodeState`` or our ``GET /ai/studies/{id}``) and is shared by every
Orthanc server on the same database.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum

from .errors import ConfigError, InputError, ModelError, PluginError, RulesError, WriterError

METADATA_NAME = "AiNodeState"
METADATA_INDEX = 4601  # declared in orthanc.json "UserMetadata"; plugins use indexes >= 1024
CHECKPOINT_PROPERTY = 4601  # Orthanc global property holding the last change log sequence done
PINS_PROPERTY = 4602  # Orthanc global property holding the promoted/rolled-back model per task
AUDIT_LENGTH = 100  # events kept per study


class StudyState(str, Enum):
    """The states we store, exactly as written in the metadata."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class FailStage(str, Enum):
    """Where a failure happened."""

    RULES = "rules"
    INPUT = "input"
    MODEL = "model"
    PIPELINE = "pipeline"
    WRITER = "writer"
    STORE = "store"
    FORWARD = "forward"


class OrthancCallError(PluginError):
    """A call to Orthanc's REST API failed (raised by the adapter and by test doubles)."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


# Errors that the same input will raise again: retrying them is pointless.
PERMANENT = (InputError, ConfigError, RulesError, WriterError)


def fail_stage(error: BaseException) -> FailStage:
    """Map an exception to the stage it belongs to."""
    if isinstance(error, InputError):
        return FailStage.INPUT
    if isinstance(error, ModelError):
        return FailStage.MODEL
    if isinstance(error, WriterError):
        return FailStage.WRITER
    if isinstance(error, (RulesError, ConfigError)):
        return FailStage.RULES
    if isinstance(error, OrthancCallError):
        return FailStage.STORE
    return FailStage.PIPELINE


def now_iso() -> str:
    """UTC time stamp for state records."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_state() -> dict:
    """The state of a study we have not looked at yet."""
    return {"state": StudyState.QUEUED.value, "attempts": 0, "results": [], "error": None,
            "stage": None, "reason": None, "updated": now_iso()}


def parse_state(text: str | bytes | None) -> dict | None:
    """Parse stored state; None when absent or unreadable (then the study is treated as new)."""
    if not text:
        return None
    try:
        state = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) and "state" in state else None


def audit(state: dict, event: str, **details: object) -> None:
    """Append an event to the study's audit trail (who or what, when, and the details)."""
    trail = state.setdefault("audit", [])
    trail.append({"at": now_iso(), "event": event, **details})
    del trail[:-AUDIT_LENGTH]


def done_keys(state: dict) -> set[str]:
    """Work keys whose results are already stored."""
    return {result["work_key"] for result in state.get("results", []) if "work_key" in result}
