"""An in-memory stand-in for the few REST calls the worker makes (study.OrthancApi).

Not a fake ``orthanc`` module: the worker never imports one. It lets unit tests drive the change
log, stability and restarts deterministically; the integration tests do the same on a real Orthanc.
"""

from __future__ import annotations

import io
import json
import re

import pydicom

from orthanc_plugin.rules import header_from_dataset
from orthanc_plugin.state import OrthancCallError


class FakeOrthanc:
    """Studies, series and instances keyed by their DICOM UIDs; a change log; metadata; globals."""

    def __init__(self) -> None:
        self.studies: set[str] = set()
        self.files: dict[str, bytes] = {}  # instance id -> DICOM file
        self.parent: dict[str, str] = {}  # instance -> series, series -> study
        self.changes: list[dict] = []
        self.stable: set[str] = set()
        self.metadata: dict[tuple[str, str], str] = {}
        self.globals: dict[int, str] = {}
        self.posts: list[str] = []

    # -- what a modality and Orthanc itself do ------------------------------------------------
    def store(self, data: bytes) -> dict:
        """Store a DICOM file (C-STORE or REST), logging changes as Orthanc does."""
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        study, series, instance = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        if instance in self.files:
            return {"ID": instance, "ParentSeries": series, "Status": "AlreadyStored"}
        if study not in self.studies:
            self.studies.add(study)
            self._log("NewStudy", study)
        self.files[instance] = data
        self.parent[instance], self.parent[series] = series, study
        self.stable.discard(study)
        self._log("NewInstance", instance)
        return {"ID": instance, "ParentSeries": series, "Status": "Success"}

    def make_stable(self, study: str) -> None:
        """What Orthanc does StableAge seconds after the last instance."""
        self.stable.add(study)
        self._log("StableStudy", study)

    def _log(self, change_type: str, resource: str) -> None:
        self.changes.append({"ChangeType": change_type, "ID": resource, "Seq": len(self.changes) + 1})

    def series_of(self, study: str) -> list[str]:
        return sorted({s for i, s in self.parent.items() if i in self.files and self.parent[s] == study})

    def instances_of(self, series: str) -> list[str]:
        return sorted(i for i in self.files if self.parent[i] == series)

    # -- study.OrthancApi ---------------------------------------------------------------------
    def get_json(self, uri: str) -> object:
        if match := re.fullmatch(r"/changes\?since=(\d+)&limit=(\d+)", uri):
            since, limit = int(match[1]), int(match[2])
            page = [c for c in self.changes if c["Seq"] > since][:limit]
            last = page[-1]["Seq"] if page else max(since, len(self.changes))
            return {"Changes": page, "Done": last >= len(self.changes), "Last": last}
        if match := re.fullmatch(r"/instances/([^/]+)/study", uri):
            return {"ID": self.parent[self.parent[self._instance(match[1])]]}
        if match := re.fullmatch(r"/studies/([^/]+)", uri):
            return {"ID": self._study(match[1]), "IsStable": match[1] in self.stable, "LastUpdate": ""}
        if match := re.fullmatch(r"/studies/([^/]+)/series", uri):
            return [{"ID": s, "Instances": self.instances_of(s),
                     "MainDicomTags": {"Manufacturer": self._header(self.instances_of(s)[0]).get("Manufacturer")}}
                    for s in self.series_of(self._study(match[1]))]
        if match := re.fullmatch(r"/instances/([^/]+)/tags\?simplify", uri):
            return self._header(self._instance(match[1]))
        if match := re.fullmatch(r"/series/([^/]+)/instances", uri):
            return [{"ID": i, "MainDicomTags": {"SOPInstanceUID": i}} for i in self.instances_of(match[1])]
        raise OrthancCallError(f"GET {uri}: not in the fake", not_found=True)

    def get_bytes(self, uri: str) -> bytes:
        if match := re.fullmatch(r"/instances/([^/]+)/file", uri):
            return self.files[self._instance(match[1])]
        if match := re.fullmatch(r"/(studies|instances)/([^/]+)/metadata/(\w+)", uri):
            if (match[2], match[3]) in self.metadata:
                return self.metadata[(match[2], match[3])].encode()
        raise OrthancCallError(f"GET {uri}: not found", not_found=True)

    def post(self, uri: str, body: bytes | str) -> object:
        self.posts.append(uri)
        if uri == "/instances":
            return self.store(body if isinstance(body, bytes) else body.encode())
        raise OrthancCallError(f"POST {uri}: not in the fake")

    def put(self, uri: str, body: bytes | str) -> None:
        match = re.fullmatch(r"/studies/([^/]+)/metadata/(\w+)", uri)
        assert match, uri
        self.metadata[(match[1], match[2])] = body if isinstance(body, str) else body.decode()

    def get_global(self, index: int, default: str) -> str:
        return self.globals.get(index, default)

    def set_global(self, index: int, value: str) -> None:
        self.globals[index] = value

    # -- helpers ------------------------------------------------------------------------------
    def state(self, study: str) -> dict | None:
        text = self.metadata.get((study, "AiNodeState"))
        return json.loads(text) if text else None

    def _instance(self, instance: str) -> str:
        if instance not in self.files:
            raise OrthancCallError(f"no instance {instance}", not_found=True)
        return instance

    def _study(self, study: str) -> str:
        if study not in self.studies:
            raise OrthancCallError(f"no study {study}", not_found=True)
        return study

    def _header(self, instance: str) -> dict:
        return header_from_dataset(pydicom.dcmread(io.BytesIO(self.files[instance]), stop_before_pixels=True))
