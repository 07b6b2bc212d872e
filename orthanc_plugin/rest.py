"""Our REST routes, as plain functions returning (HTTP status, JSON body).

The adapter registers them with Orthanc, so they sit behind Orthanc's own authentication, and
passes each handler the request body and the authenticated user (for the audit trail).
"""

from __future__ import annotations

import json
import re

from . import SOFTWARE_VERSION, rules
from . import study as study_work
from .errors import ModelError
from .state import OrthancCallError
from .worker import Worker

# Orthanc identifiers are SHA-1 based: five dash-separated groups of 8 hex digits.
ORTHANC_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"
# name -> (HTTP method, URI regex); the groups are the handler's positional arguments.
ROUTES = {
    "status": ("GET", "/ai/status"),
    "study": ("GET", f"/ai/studies/({ORTHANC_ID})"),
    "run": ("POST", f"/ai/studies/({ORTHANC_ID})/run"),
    "explain": ("GET", f"/ai/studies/({ORTHANC_ID})/explain"),
    "audit": ("GET", f"/ai/studies/({ORTHANC_ID})/audit"),
    "shadow": ("GET", "/ai/shadow"),
    "promote": ("POST", "/ai/models/promote"),
    "rollback": ("POST", "/ai/models/rollback"),
}


def _json_body(body: bytes, required: str | None = None) -> dict:
    """Parse a JSON object body; raise ValueError (answered 400) naming what is wrong."""
    try:
        document = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the request body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(document).__name__}")
    if required is not None and not isinstance(document.get(required), str):
        raise ValueError(f"the request body needs a string {required!r}, e.g. {{\"{required}\": \"...\"}}")
    return document


class Routes:
    """Handlers of the /ai/ routes over the worker's state."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def status(self, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """GET /ai/status: models, providers, rules, queue depth, counts by state."""
        holder = self.worker.rules
        return 200, {
            "version": SOFTWARE_VERSION,
            "models": self.worker.registry.status(),
            "rules": {"file": str(holder.path), "rules": [r.name for r in holder.current.rules],
                      "last_error": holder.last_error},
            **self.worker.status(),
        }

    def study(self, study_id: str, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """GET /ai/studies/{id}: the stored state (with findings) of one study."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        state = self.worker.load_state(study_id)
        return 200, state if state is not None else {"state": "unseen", "study": study_id}

    def run(self, study_id: str, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """POST /ai/studies/{id}/run: queue a re-run; body ``{"models": {task: version}}`` optional."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        versions = _json_body(body).get("models") or {}
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise ValueError(f"'models' must map a task to a version, got {versions!r}")
        try:
            self.worker.registry.snapshot(versions)  # an unknown version is refused now, not later
        except ModelError as error:
            return 409, {"error": str(error)}
        self.worker.request_rerun(study_id, versions=versions, by=f"rest:{user or 'anonymous'}")
        return 202, {"study": study_id, "queued": True, "models": versions}

    def explain(self, study_id: str, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """GET /ai/studies/{id}/explain: which rule matched which series, and why others did not."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        headers = study_work.series_headers(self.worker.api, study_id)
        return 200, {"study": study_id, "series": rules.explain(self.worker.rules.current, headers)}

    def audit(self, study_id: str, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """GET /ai/studies/{id}/audit: who or what triggered each step, rules, models, outcomes."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        state = self.worker.load_state(study_id) or {}
        return 200, {"study": study_id, "audit": state.get("audit", [])}

    def shadow(self, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """GET /ai/shadow: shadow models and their agreement with the served versions so far."""
        shadows = [{"file": m.path.name, "task": task, "version": m.spec.version}
                   for task, models in self.worker.registry.shadows().items() for m in models]
        return 200, {"shadow_models": shadows, "comparisons": self.worker.shadow_ledger.summary()}

    def promote(self, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """POST /ai/models/promote ``{"file": "x.onnx"}``: serve that file for its task."""
        return self._choose("promote", _json_body(body, "file")["file"], user)

    def rollback(self, *, body: bytes = b"", user: str = "") -> tuple[int, dict]:
        """POST /ai/models/rollback ``{"task": "..."}``: serve the previous version of a task."""
        return self._choose("rollback", _json_body(body, "task")["task"], user)

    def _choose(self, action: str, target: str, user: str) -> tuple[int, dict]:
        try:
            outcome = self.worker.choose_model(action, target)
        except ModelError as error:
            return 409, {"error": str(error)}
        return 200, {**outcome, "by": f"rest:{user or 'anonymous'}"}

    def _exists(self, study_id: str) -> bool:
        if not re.fullmatch(ORTHANC_ID, study_id):
            return False
        try:
            self.worker.api.get_json(f"/studies/{study_id}")
        except OrthancCallError:
            return False
        return True
