"""Process one stable study: headers -> rules -> pipelines -> writers -> store back in Orthanc.

Plain Python over an ``OrthancApi`` (the adapter inside Orthanc, a test double in unit tests).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pydicom

from . import MANUFACTURER, rules, shadow
from .findings import Findings
from .models import LoadedModel
from .pipelines import PIPELINES
from .state import OrthancCallError, done_keys, now_iso
from .timing import Stopwatch
from .uids import output_uids, work_key
from .writers import write_sc, write_seg, write_sr

logger = logging.getLogger(__name__)

WRITERS = {"sc": write_sc, "seg": write_seg, "sr": write_sr}


class OrthancApi(Protocol):
    """The few calls into Orthanc's REST API the core needs (see adapter.OrthancRestApi)."""

    def get_json(self, uri: str) -> object: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def post(self, uri: str, body: bytes | str) -> object: ...
    def put(self, uri: str, body: bytes | str) -> None: ...
    def get_global(self, index: int, default: str) -> str: ...
    def set_global(self, index: int, value: str) -> None: ...


@dataclass(frozen=True)
class WorkItem:
    """One source instance to interpret with one rule's pipeline."""

    instance_id: str
    sop_instance_uid: str
    series_id: str
    rule: rules.Rule


def series_headers(api: OrthancApi, study_id: str) -> dict[str, dict]:
    """{series id: header of its first instance}, our own result series left out."""
    headers: dict[str, dict] = {}
    for series in api.get_json(f"/studies/{study_id}/series"):  # type: ignore[union-attr]
        tags = series.get("MainDicomTags", {})
        if tags.get("Manufacturer") == MANUFACTURER or not series.get("Instances"):
            continue
        headers[series["ID"]] = instance_header(api, sorted(series["Instances"])[0])
    return headers


def instance_header(api: OrthancApi, instance_id: str) -> dict:
    """Simplified tags of an instance plus the AE titles it came with."""
    header = dict(api.get_json(f"/instances/{instance_id}/tags?simplify"))  # type: ignore[arg-type]
    for key, metadata in (("CallingAETitle", "RemoteAET"), ("CalledAETitle", "CalledAET")):
        try:
            header[key] = api.get_bytes(f"/instances/{instance_id}/metadata/{metadata}").decode()
        except OrthancCallError:
            pass
    return header


def plan(api: OrthancApi, study_id: str, ruleset: rules.RuleSet) -> tuple[list[WorkItem], dict[str, dict]]:
    """Return the work the rules ask for in this study, and the series headers they saw."""
    headers = series_headers(api, study_id)
    items: list[WorkItem] = []
    for series_id, header in headers.items():
        selected = rules.select(ruleset, header)
        if not selected:
            continue
        instances = api.get_json(f"/series/{series_id}/instances")  # type: ignore[assignment]
        for instance in sorted(instances, key=lambda i: i["ID"]):  # type: ignore[union-attr]
            sop_uid = instance.get("MainDicomTags", {}).get("SOPInstanceUID", instance["ID"])
            items.extend(WorkItem(instance["ID"], sop_uid, series_id, rule) for rule in selected)
    return items, headers


def skip_reason(ruleset: rules.RuleSet, headers: Mapping[str, dict]) -> str:
    """Why no rule applies, one clause per series, for the study's state."""
    if not headers:
        return "no input series (only AI results or empty series)"
    clauses = []
    for explained in rules.explain(ruleset, headers):
        header = headers[explained["series"]]  # type: ignore[index]
        label = f"{header.get('Modality', '?')} series '{header.get('SeriesDescription', explained['series'])}'"
        reasons = [f"{o['rule']}: {o['reason']}" for o in explained["rules"]]  # type: ignore[attr-defined]
        clauses.append(f"{label} ({'; '.join(reasons) or 'no rules'})")
    return "no rule matched: " + "; ".join(clauses)


def keys_for(item: WorkItem, models: Mapping[str, LoadedModel]) -> str:
    """The work key of an item: same source, pipeline, variant and model versions -> same key."""
    pipeline = PIPELINES[item.rule.pipeline]
    versions = [f"{models[t].spec.name}-{models[t].spec.version}" for t in pipeline.tasks if t in models]
    return work_key(item.sop_instance_uid, item.rule.pipeline, item.rule.variant, versions)


def pending_items(items: list[WorkItem], state: dict, models: Mapping[str, LoadedModel]) -> list[WorkItem]:
    """Items whose results are not stored yet."""
    done = done_keys(state)
    return [item for item in items if keys_for(item, models) not in done]


def run_item(api: OrthancApi, item: WorkItem, models: Mapping[str, LoadedModel], *,
             calibration_mm_per_pixel: float | None,
             shadows: Mapping[str, list[LoadedModel]] | None = None) -> dict:
    """Interpret one instance, write SC + SEG + SR, store them; return the result record.

    Each shadow model of a task the pipeline uses runs on the same image in place of the served
    one; only its agreement with the served findings is recorded (``result["shadow"]``).
    """
    started = time.perf_counter()
    watch = Stopwatch()
    key = keys_for(item, models)
    with watch.phase("read"):
        data = api.get_bytes(f"/instances/{item.instance_id}/file")
        source = pydicom.dcmread(io.BytesIO(data))
    pipeline = PIPELINES[item.rule.pipeline]
    options = dict(item.rule.options)
    findings = pipeline.run(source, models, options, variant=item.rule.variant,
                            calibration_mm_per_pixel=calibration_mm_per_pixel, stopwatch=watch)
    compared = []
    with watch.phase("shadow"):
        for task in pipeline.tasks:
            for candidate in (shadows or {}).get(task, []):
                other = pipeline.run(source, {**models, task: candidate}, options, variant=item.rule.variant,
                                     calibration_mm_per_pixel=calibration_mm_per_pixel)
                compared.append({"file": candidate.path.name, "task": task, "version": candidate.spec.version,
                                 "sha256": candidate.sha256, **shadow.compare(findings, other)})
    outputs: dict[str, dict] = {}
    encoded: dict[str, bytes] = {}
    with watch.phase("write"):
        for kind, writer in WRITERS.items():
            uids = output_uids(key, kind)  # type: ignore[arg-type]
            buffer = io.BytesIO()
            writer(source, findings, uids).save_as(buffer, enforce_file_format=True)
            encoded[kind] = buffer.getvalue()
            outputs[kind] = {"series_instance_uid": uids.series_instance_uid,
                             "sop_instance_uid": uids.sop_instance_uid}
    with watch.phase("store"):
        for kind, payload in encoded.items():
            answer = api.post("/instances", payload)
            outputs[kind]["instance_id"] = answer["ID"]  # type: ignore[index]
            outputs[kind]["series_id"] = answer.get("ParentSeries")  # type: ignore[union-attr]
    return {"work_key": key, "source_instance": item.instance_id,
            "source_sop_instance_uid": item.sop_instance_uid, "rule": item.rule.name,
            "pipeline": item.rule.pipeline, "variant": item.rule.variant,
            "models": [vars(m) for m in findings.models], "outputs": outputs,
            "findings": summarise(findings), "shadow": compared, "timings_ms": watch.rounded(),
            "total_ms": round((time.perf_counter() - started) * 1000.0, 1), "stored": now_iso()}


def summarise(findings: Findings) -> dict:
    """JSON summary of findings for the study state and the REST API."""
    return {
        "frame_number": findings.frame_number,
        "view": findings.view,
        "calibrated": findings.calibrated,
        "measurements": {m.name: {"value": m.value, "unit": m.unit} for m in findings.measurements},
        "lobes": [{"side": lobe.side, "area_px": lobe.area_px, "length_px": round(lobe.length_px, 1)}
                  for lobe in findings.lobes],
        "nodules": [{"number": n.number, "lobe": n.lobe, "pole": n.pole,
                     "diameter_mm": None if n.diameter_mm is None else round(n.diameter_mm, 1),
                     "diameter_px": round(n.diameter_px, 1),
                     "nodule_to_parenchyma_ratio": round(n.nodule_to_parenchyma_ratio, 3),
                     "confidence": round(n.confidence, 3)} for n in findings.nodules],
        "warnings": list(findings.warnings),
    }


def supersede(results: list[dict], new: dict) -> None:
    """Mark older results of the same source, pipeline and variant as superseded by ``new``."""
    for result in results:
        same_work = (result.get("source_sop_instance_uid") == new["source_sop_instance_uid"]
                     and result.get("pipeline") == new["pipeline"]
                     and result.get("variant") == new["variant"])
        if same_work and result["work_key"] != new["work_key"] and not result.get("superseded_by"):
            result["superseded_by"] = new["work_key"]
