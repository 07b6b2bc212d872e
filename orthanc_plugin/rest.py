"""Our REST routes, as plain functions returning (HTTP status, JSON body).

The adapter registers them with Orthanc, so they sit behind Orthanc's own authentication.
"""

from __future__ import annotations

import re

from . import SOFTWARE_VERSION, rules
from . import study as study_work
from .state import OrthancCallError
from .worker import Worker

# Orthanc identifiers are SHA-1 based: five dash-separated groups of 8 hex digits.
ORTHANC_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"
ROUTES = {
    "status": "/ai/status",
    "study": f"/ai/studies/({ORTHANC_ID})",
    "run": f"/ai/studies/({ORTHANC_ID})/run",
    "explain": f"/ai/studies/({ORTHANC_ID})/explain",
}


class Routes:
    """Handlers of the /ai/ routes over the worker's state."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def status(self) -> tuple[int, dict]:
        """GET /ai/status: models, providers, rules, queue depth, counts by state."""
        holder = self.worker.rules
        return 200, {
            "version": SOFTWARE_VERSION,
            "models": self.worker.registry.status(),
            "rules": {"file": str(holder.path), "rules": [r.name for r in holder.current.rules],
                      "last_error": holder.last_error},
            **self.worker.status(),
        }

    def study(self, study_id: str) -> tuple[int, dict]:
        """GET /ai/studies/{id}: the stored state (with findings) of one study."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        state = self.worker.load_state(study_id)
        return 200, state if state is not None else {"state": "unseen", "study": study_id}

    def run(self, study_id: str) -> tuple[int, dict]:
        """POST /ai/studies/{id}/run: queue a re-run (idempotent for unchanged models)."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        self.worker.request_rerun(study_id)
        return 202, {"study": study_id, "queued": True}

    def explain(self, study_id: str) -> tuple[int, dict]:
        """GET /ai/studies/{id}/explain: which rule matched which series, and why others did not."""
        if not self._exists(study_id):
            return 404, {"error": f"no study {study_id}"}
        headers = study_work.series_headers(self.worker.api, study_id)
        return 200, {"study": study_id, "series": rules.explain(self.worker.rules.current, headers)}

    def _exists(self, study_id: str) -> bool:
        if not re.fullmatch(ORTHANC_ID, study_id):
            return False
        try:
            self.worker.api.get_json(f"/studies/{study_id}")
        except OrthancCallError:
            return False
        return True
