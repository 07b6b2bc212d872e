"""Header rules: conditions, load errors, selection, explain, hot reload, and the shipped rules."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from orthanc_plugin.errors import RulesError
from orthanc_plugin.rules import (
    Forward,
    RulesHolder,
    explain,
    header_from_dataset,
    load_rules,
    match,
    parse_rules,
    select,
)

PIPELINES = {"thyroid", "qc"}
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "rules" / "default.json"
NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
STATIC = ("ORIGINAL", "PRIMARY", "STATIC", "EMISSION")


def _rule(conditions: dict, **extra: object) -> dict:
    """A valid rule document with the given conditions."""
    return {"name": "r1", "pipeline": "thyroid", "conditions": conditions, **extra}


def _one_rule(conditions: dict):
    """Parse a single-rule document and return its rule."""
    doc = {"version": 1, "rules": [_rule(conditions)]}
    return parse_rules(doc, known_pipelines=PIPELINES).rules[0]


def _nuclide_seq(code: str) -> list:
    """Orthanc-shaped RadiopharmaceuticalInformationSequence with one radionuclide code."""
    return [{"Radiopharmaceutical": "Tc-99m pertechnetate",
             "RadionuclideCodeSequence": [{"CodeValue": code, "CodingSchemeDesignator": "SRT"}]}]


NM = {"Modality": "NM", "ImageType": "ORIGINAL\\PRIMARY\\STATIC\\EMISSION"}
WB = {"Modality": "NM", "ImageType": "ORIGINAL\\PRIMARY\\WHOLE BODY\\EMISSION"}
SEQ = "RadiopharmaceuticalInformationSequence/RadionuclideCodeSequence/CodeValue"
RIS = "RadiopharmaceuticalInformationSequence"
EWS = "EnergyWindowInformationSequence"
DESC = "StudyDescription|SeriesDescription"
BP, SD = "BodyPartExamined", "StudyDescription"

# (header, conditions, matched, substring of the reason)
CASES = [
    # missing and empty attributes never match
    (NM, {BP: "thyr"}, False, "BodyPartExamined: missing"),
    ({**NM, BP: ""}, {BP: "thyr"}, False, "BodyPartExamined: empty"),
    ({**NM, BP: "  "}, {BP: "."}, False, "BodyPartExamined: empty"),
    ({**NM, BP: None}, {BP: "."}, False, "BodyPartExamined: missing"),
    # case-insensitive regex (re.search)
    ({"Modality": "nm"}, {"Modality": "^NM$"}, True, "Modality: 'nm' matches '^NM$'"),
    ({"Modality": "CT"}, {"Modality": "^NM$"}, False, "Modality: 'CT' does not match '^NM$'"),
    ({SD: "Scinti THYROID"}, {SD: "thyr"}, True, "matches"),
    # accents: either side may carry them
    ({SD: "Scintigraphie thyroïde"}, {SD: "thyroide"}, True, "matches"),
    ({SD: "THYROIDE"}, {SD: "thyroïde"}, True, "matches"),
    ({SD: "Schilddrüse"}, {SD: "schilddruse"}, True, "matches"),
    ({SD: "Cintilografia da tireóide"}, {SD: "tireoide"}, True, "matches"),
    ({SD: "Gammagrafía de glándula tiroides"}, {SD: "glandula tiroides"}, True, "matches"),
    # multi-valued ImageType: all listed values present, '!TERM' absent, whole values, any case
    (NM, {"ImageType": ["STATIC", "!WHOLE BODY"]}, True, "ImageType: 'ORIGINAL\\\\PRIMARY"),
    (NM, {"ImageType": ["static", "emission"]}, True, "has ['static', 'emission']"),
    (WB, {"ImageType": ["STATIC", "!WHOLE BODY"]}, False, "ImageType: 'WHOLE BODY' is excluded"),
    (WB, {"ImageType": ["STATIC"]}, False, "ImageType: 'STATIC' is not among"),
    ({"ImageType": "ORIGINAL\\STATICX"}, {"ImageType": ["STATIC"]}, False, "is not among"),
    ({"Modality": "NM"}, {"ImageType": ["!WHOLE BODY"]}, False, "ImageType: missing"),
    # a path through sequences: any item on the path
    ({RIS: _nuclide_seq("C-163A8")}, {SEQ: "^C-163A8$"}, True, f"{SEQ}: 'C-163A8' matches"),
    ({RIS: _nuclide_seq("C-114A4")}, {SEQ: "^C-163A8$"}, False,
     f"{SEQ}: 'C-114A4' does not match '^C-163A8$'"),
    ({RIS: _nuclide_seq("C-114A4") + _nuclide_seq("C-163A8")}, {SEQ: "^C-163A8$"}, True,
     "'C-163A8' matches"),
    ({RIS: _nuclide_seq("A") + _nuclide_seq("B")}, {SEQ: "^C$"}, False,
     "no item matches ('A' does not match '^C$'; 'B' does not match '^C$')"),
    (NM, {SEQ: "^C-163A8$"}, False, f"{SEQ}: missing"),
    ({RIS: []}, {SEQ: "."}, False, f"{SEQ}: missing"),
    ({RIS: [{"Radiopharmaceutical": "Tc"}]}, {SEQ: "."}, False, "missing"),
    # '|' alternatives: any of them
    ({"SeriesDescription": "Thyroid ant"}, {DESC: "thyr"}, True, "SeriesDescription: 'Thyroid"),
    ({SD: "Bone"}, {DESC: "thyr"}, False,
     "StudyDescription: 'Bone' does not match 'thyr'; SeriesDescription: missing"),
    # numbers: equality, every value of a multi-valued attribute
    ({"Rows": "128"}, {"Rows": 128}, True, "Rows: '128' is 128"),
    ({"Rows": "256"}, {"Rows": 128}, False, "Rows: '256' is not 128"),
    ({"Rows": 128}, {"Rows": 128}, True, "is 128"),
    ({"Rows": "abc"}, {"Rows": 128}, False, "Rows: 'abc' is not a number"),
    ({"PixelSpacing": "2.5\\2.5"}, {"PixelSpacing": 2.5}, True, "is 2.5"),
    ({"PixelSpacing": "2.5\\3"}, {"PixelSpacing": 2.5}, False, "'2.5\\\\3' is not 2.5"),
    # ranges: inclusive edges, open ends
    ({"Rows": "64"}, {"Rows": [64, 256]}, True, "is in [64, 256]"),
    ({"Rows": "256"}, {"Rows": [64, 256]}, True, "is in [64, 256]"),
    ({"Rows": "257"}, {"Rows": [64, 256]}, False, "Rows: '257' is not in [64, 256]"),
    ({"Rows": "63.9"}, {"Rows": [64, 256]}, False, "'63.9' is not in [64, 256]"),
    ({"Rows": "1"}, {"Rows": [None, 256]}, True, "is <= 256"),
    ({"Rows": "100000"}, {"Rows": [64, None]}, True, "is >= 64"),
    ({"Rows": "10"}, {"Rows": [64, None]}, False, "'10' is not >= 64"),
    ({"PixelSpacing": "1.5\\3.5"}, {"PixelSpacing": [1, 3]}, False, "is not in [1, 3]"),
    # AE titles added by the node
    ({**NM, "CallingAETitle": "GAMMA_CAM1"}, {"CallingAETitle": "^GAMMA_CAM1$"}, True,
     "CallingAETitle: 'GAMMA_CAM1' matches"),
    ({**NM, "CallingAETitle": "GAMMA_CAM10"}, {"CallingAETitle": "^GAMMA_CAM1$"}, False,
     "CallingAETitle: 'GAMMA_CAM10' does not match"),
    (NM, {"CallingAETitle": "^GAMMA_CAM1$"}, False, "CallingAETitle: missing"),
    ({**NM, "CalledAETitle": "AI_NODE"}, {"CalledAETitle": "^ai_node$"}, True, "CalledAETitle"),
    # absence, and negation of a condition
    (NM, {f"!{EWS}": None}, True, f"{EWS}: absent"),
    ({**NM, EWS: []}, {f"!{EWS}": None}, True, "absent"),
    ({**NM, EWS: [{"EnergyWindowName": "Tc"}]}, {f"!{EWS}": None}, False,
     f"{EWS}: present (must be absent)"),
    ({"SeriesDescription": "x"}, {f"!{DESC}": None}, False,
     "SeriesDescription: present (must be absent)"),
    (WB, {"!ImageType": "whole"}, False, "WHOLE BODY\\\\EMISSION' matches 'whole' (excluded by"),
    (NM, {"!ImageType": "whole"}, True, "!ImageType: no match, as required"),
    ({"Modality": "NM"}, {"!ImageType": "whole"}, True, "no match, as required"),
    ({SD: "Parathyroid"}, {f"!{DESC}": "parath"}, False, "(excluded by '!StudyDescription"),
    # the first failing condition is named
    ({"Modality": "CT", "ImageType": "X"}, {"Modality": "^NM$", "ImageType": ["STATIC"]}, False,
     "Modality: 'CT' does not match '^NM$'"),
    ({"Modality": "NM", "ImageType": "X"}, {"Modality": "^NM$", "ImageType": ["STATIC"]}, False,
     "ImageType: 'STATIC' is not among 'X'"),
]


@pytest.mark.parametrize(("header", "conditions", "matched", "reason"), CASES)
def test_match(header: dict, conditions: dict, matched: bool, reason: str) -> None:
    ok, why = match(_one_rule(conditions), header)
    assert (ok, reason in why) == (matched, True), why


def test_match_summary_of_a_hit_names_every_condition() -> None:
    ok, why = match(_one_rule({"Modality": "^NM$", "ImageType": ["STATIC"]}), NM)
    assert ok
    assert "Modality: 'NM' matches '^NM$'" in why and "ImageType:" in why


# ---------------------------------------------------------------- load errors

def _doc(**changes: object) -> dict:
    """A valid document with one rule; changes apply to the rule (or the top with 'top_')."""
    doc = {"version": 1, "rules": [_rule({"Modality": "^NM$"}, variant="tc99m")]}
    for key, value in changes.items():
        target = doc if key.startswith("top_") else doc["rules"][0]
        key = key.removeprefix("top_")
        if value is _DROP:
            target.pop(key, None)
        else:
            target[key] = value
    return doc


_DROP = object()
R = "<dict>: rule 'r1', "
C = R + "condition "
FWD = {"destination": "PACS", "what": "study"}

LOAD_ERRORS = [
    # the document
    ([], "<dict>: expected a JSON object with 'version' and 'rules', got []"),
    (_doc(top_version=2), "<dict>: key 'version': expected 1, got 2"),
    (_doc(top_version=_DROP), "<dict>: key 'version': expected 1, got null"),
    (_doc(top_version=True), "<dict>: key 'version': expected 1, got true"),
    (_doc(top_version="1"), '<dict>: key \'version\': expected 1, got "1"'),
    (_doc(top__comment="x"),
     "<dict>: unknown key '_comment' (expected one of: version, description, rules)"),
    (_doc(top_description=3), "<dict>: key 'description': expected a string, got 3"),
    (_doc(top_rules={}), "<dict>: key 'rules': expected a list of rules, got {}"),
    # a rule
    ({"version": 1, "rules": ["r"]}, '<dict>: rule #1: expected a JSON object, got "r"'),
    (_doc(_comment="x"), R + "unknown key '_comment' (expected one of: name, description, "
     "pipeline, variant, options, conditions, forward)"),
    (_doc(name=_DROP), "<dict>: rule #1, key 'name': expected 1-64 letters, digits"),
    (_doc(name="two words"), "<dict>: rule #1, key 'name': expected 1-64 letters, digits, "
     "'.', '_' or '-', starting with a letter or digit, got \"two words\""),
    ({"version": 1, "rules": [_rule({"Modality": "NM"}), _rule({"Modality": "CT"})]},
     R + "key 'name': duplicate rule name"),
    (_doc(pipeline="lung"), R + 'key \'pipeline\': unknown pipeline "lung" (known: qc, thyroid)'),
    (_doc(pipeline=_DROP), R + "key 'pipeline': expected a non-empty string, got null"),
    (_doc(variant=""), R + 'key \'variant\': expected a non-empty string, got ""'),
    (_doc(description=5), R + "key 'description': expected a string, got 5"),
    (_doc(options=[1]), R + "key 'options': expected a JSON object, got [1]"),
    (_doc(options={"x": [1]}), R + "option 'x': expected a string, number or true/false, got [1]"),
    (_doc(options={"x": None}),
     R + "option 'x': expected a string, number or true/false, got null"),
    (_doc(conditions={}), R + "key 'conditions': expected a non-empty JSON object, got {}"),
    (_doc(conditions=_DROP), R + "key 'conditions': expected a non-empty JSON object, got null"),
    # a condition
    (_doc(conditions={"EnergyWindow": "140"}), C + "'EnergyWindow': unknown DICOM keyword "
     "'EnergyWindow' (expected a DICOM keyword, CallingAETitle or CalledAETitle)"),
    (_doc(conditions={"StudyDescription|Foo": "x"}),
     C + "'StudyDescription|Foo': unknown DICOM keyword 'Foo'"),
    (_doc(conditions={"Rows": [140]}), C + "'Rows': expected a range [low, high], got [140]"),
    (_doc(conditions={"Rows": [1, 2, 3]}),
     C + "'Rows': expected a range [low, high], got [1, 2, 3]"),
    (_doc(conditions={"Rows": [1, "a"]}),
     C + "'Rows': expected a range [low, high], got [1, \"a\"]"),
    (_doc(conditions={"Rows": [150, 140]}),
     C + "'Rows': expected a range [low, high] with low <= high, got [150, 140]"),
    (_doc(conditions={"Rows": [None, None]}),
     C + "'Rows': expected a range [low, high] with at least one bound, got [null, null]"),
    (_doc(conditions={"Rows": True}), C + "'Rows': expected a regular expression (string), "
     "a number, a range [low, high], a list of terms (strings), or null with '!', got true"),
    (_doc(conditions={"Rows": {"min": 1}}), C + "'Rows': expected a regular expression (string)"),
    (_doc(conditions={"Rows": []}), C + "'Rows': expected a regular expression (string)"),
    (_doc(conditions={"Rows": float("nan")}), C + "'Rows': expected a regular expression (string)"),
    (_doc(conditions={"Modality": "(NM"}), C + "'Modality': invalid regular expression \"(NM\": "
     "missing ), unterminated subpattern at position 0"),
    (_doc(conditions={"Modality": ""}),
     C + "'Modality': expected a non-empty regular expression, got \"\""),
    (_doc(conditions={"Modality": None}), C + "'Modality': null means 'must be absent' and "
     "needs a '!' before the keyword (e.g. '!Modality': null)"),
    (_doc(conditions={"!": None}), C + "'!': expected a DICOM keyword as key, got \"!\""),
    (_doc(conditions={"Modality/CodeValue": "x"}),
     C + "'Modality/CodeValue': 'Modality' is not a sequence, so it cannot be followed by '/'"),
    (_doc(conditions={"RadiopharmaceuticalInformationSequence": "Tc"}),
     C + "'RadiopharmaceuticalInformationSequence': 'RadiopharmaceuticalInformationSequence' is "
     "a sequence: give a path to an attribute inside it"),
    (_doc(conditions={"RadiopharmaceuticalInformationSequence/CallingAETitle": "x"}),
     C + "'RadiopharmaceuticalInformationSequence/CallingAETitle': CallingAETitle is not a DICOM "
     "attribute and cannot be in a path"),
    (_doc(conditions={"ImageType": ["STATIC", "!static"]}),
     C + "'ImageType': term 'static' is both required and excluded"),
    (_doc(conditions={"ImageType": ["!"]}),
     C + "'ImageType': expected non-empty terms ('VALUE' or '!VALUE'), got [\"!\"]"),
    # forward
    (_doc(forward="PACS"), R + 'forward: expected a JSON object, got "PACS"'),
    (_doc(forward={**FWD, "what": "everything"}),
     R + 'forward: key \'what\': expected "results" or "study", got "everything"'),
    (_doc(forward={**FWD, "destination": ""}),
     R + 'forward: key \'destination\': expected a non-empty string, got ""'),
    (_doc(forward={**FWD, "retries": 11}),
     R + "forward: key 'retries': expected an integer from 0 to 10, got 11"),
    (_doc(forward={**FWD, "retries": -1}),
     R + "forward: key 'retries': expected an integer from 0 to 10, got -1"),
    (_doc(forward={**FWD, "retries": True}),
     R + "forward: key 'retries': expected an integer from 0 to 10, got true"),
    (_doc(forward={**FWD, "retries": "3"}),
     R + 'forward: key \'retries\': expected an integer from 0 to 10, got "3"'),
    (_doc(forward={**FWD, "delay": 3}),
     R + "forward: unknown key 'delay' (expected one of: destination, what, retries)"),
]


@pytest.mark.parametrize(("doc", "message"), LOAD_ERRORS)
def test_load_errors(doc: object, message: str) -> None:
    with pytest.raises(RulesError, match="^" + re.escape(message)):
        parse_rules(doc, known_pipelines=PIPELINES)


def test_valid_document_with_every_field() -> None:
    options = {"nodule_probability": 0.5, "tag": "x", "on": True}
    doc = _doc(description="Tc-99m thyroid", options=options, top_description="site rules",
               forward={"destination": "PACS", "what": "results"})
    ruleset = parse_rules(doc, known_pipelines=PIPELINES, source="site.json")
    rule = ruleset.rules[0]
    assert (ruleset.source, ruleset.description) == ("site.json", "site rules")
    assert (rule.name, rule.pipeline, rule.variant) == ("r1", "thyroid", "tc99m")
    assert rule.description == "Tc-99m thyroid" and dict(rule.options) == options
    assert rule.forward == Forward("PACS", "results", 3)
    with pytest.raises(TypeError):
        rule.options["x"] = 1  # type: ignore[index]
    assert parse_rules(_doc(variant=_DROP), known_pipelines=PIPELINES).rules[0].variant == "default"


def test_load_rules_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "version": 1,\n  "rules": [,]\n}\n', encoding="utf-8")
    message = r"bad\.json, line 3 column 13: invalid JSON: Expecting value"
    with pytest.raises(RulesError, match=message):
        load_rules(path, known_pipelines=PIPELINES)


def test_load_rules_duplicate_json_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"version": 1, "rules": [{"name": "r", "pipeline": "thyroid", '
                    '"conditions": {"Modality": "NM", "Modality": "CT"}}]}', encoding="utf-8")
    with pytest.raises(RulesError, match=r"dup\.json: duplicate key 'Modality' in a JSON object"):
        load_rules(path, known_pipelines=PIPELINES)


def test_load_rules_missing_file_and_source_prefix(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nope\.json: cannot read rules file"):
        load_rules(tmp_path / "nope.json", known_pipelines=PIPELINES)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(pipeline="lung")), encoding="utf-8")
    message = f"{path}: rule 'r1', key 'pipeline': unknown pipeline"
    with pytest.raises(RulesError, match=re.escape(message)):
        load_rules(path, known_pipelines=PIPELINES)


# ---------------------------------------------------------------- select and explain

def _ordered_ruleset():
    """Specific before generic for 'thyroid', plus a second pipeline 'qc'."""
    rules = [
        {"name": "thyroid-specific", "pipeline": "thyroid", "variant": "specific",
         "conditions": {"Modality": "^NM$", "BodyPartExamined": "^THYROID$"}},
        {"name": "thyroid-generic", "pipeline": "thyroid", "variant": "generic",
         "conditions": {"Modality": "^NM$"}},
        {"name": "qc-nm", "pipeline": "qc", "conditions": {"Modality": "^NM$"}},
        {"name": "qc-ct", "pipeline": "qc", "conditions": {"Modality": "^CT$"}},
    ]
    return parse_rules({"version": 1, "rules": rules}, known_pipelines=PIPELINES)


@pytest.mark.parametrize(("header", "selected"), [
    ({"Modality": "NM", "BodyPartExamined": "THYROID"}, ["thyroid-specific", "qc-nm"]),
    ({"Modality": "NM", "BodyPartExamined": "NECK"}, ["thyroid-generic", "qc-nm"]),
    ({"Modality": "CT"}, ["qc-ct"]),
    ({"Modality": "MR"}, []),
    ({}, []),
])
def test_select_first_rule_per_pipeline(header: dict, selected: list[str]) -> None:
    assert [rule.name for rule in select(_ordered_ruleset(), header)] == selected


def test_explain() -> None:
    headers = {"series-nm": {"Modality": "NM", "BodyPartExamined": "THYROID"},
               "series-ct": {"Modality": "CT"}}
    result = explain(_ordered_ruleset(), headers)
    json.dumps(result)
    assert [item["series"] for item in result] == ["series-nm", "series-ct"]
    table = {(item["series"], o["rule"]): (o["matched"], o["selected"])
             for item in result for o in item["rules"]}
    assert table == {
        ("series-nm", "thyroid-specific"): (True, True),
        ("series-nm", "thyroid-generic"): (True, False),
        ("series-nm", "qc-nm"): (True, True),
        ("series-nm", "qc-ct"): (False, False),
        ("series-ct", "thyroid-specific"): (False, False),
        ("series-ct", "thyroid-generic"): (False, False),
        ("series-ct", "qc-nm"): (False, False),
        ("series-ct", "qc-ct"): (True, True),
    }
    assert result[0]["rules"][0] == {
        "rule": "thyroid-specific", "pipeline": "thyroid", "variant": "specific",
        "matched": True, "selected": True,
        "reason": "Modality: 'NM' matches '^NM$'; BodyPartExamined: 'THYROID' matches '^THYROID$'",
    }
    assert result[1]["rules"][0]["reason"] == "Modality: 'CT' does not match '^NM$'"


# ---------------------------------------------------------------- hot reload

def _write(path: Path, doc: object, tick: int) -> None:
    """Write a rules file and give it a distinct mtime."""
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    os.utime(path, ns=(tick * 10**9, tick * 10**9))


def test_holder_keeps_previous_rules_on_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.json"
    _write(path, _doc(), 1)
    holder = RulesHolder(path, known_pipelines=PIPELINES)
    first = holder.current
    assert holder.last_error is None and holder.reload_if_changed() is False

    _write(path, _doc(pipeline="lung"), 2)
    with caplog.at_level(logging.ERROR, logger="orthanc_plugin.rules"):
        assert holder.reload_if_changed() is False
    assert holder.current is first
    assert "unknown pipeline \"lung\"" in holder.last_error
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "previous rules stay in force" in caplog.records[0].getMessage()
    assert "unknown pipeline" in caplog.records[0].getMessage()

    caplog.clear()
    assert holder.reload_if_changed() is False  # unchanged bad file: not re-read, not re-logged
    assert caplog.records == []

    _write(path, "{not json", 3)
    assert holder.reload_if_changed() is False
    assert holder.current is first and "invalid JSON" in holder.last_error

    path.unlink()
    assert holder.reload_if_changed() is False
    assert holder.current is first and "cannot read rules file" in holder.last_error

    good = _doc(name="r2")
    _write(path, good, 4)
    assert holder.reload_if_changed() is True
    assert [r.name for r in holder.current.rules] == ["r2"] and holder.last_error is None


def test_holder_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    _write(path, _doc(top_version=2), 1)
    with pytest.raises(RulesError, match="key 'version': expected 1, got 2"):
        RulesHolder(path, known_pipelines=PIPELINES)


# ---------------------------------------------------------------- header_from_dataset

def test_header_from_dataset_shape() -> None:
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    ds.Rows = 128
    ds.PixelSpacing = ["2.5", "2.5"]
    ds.PatientName = "Doe^Jane"
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]
    ds.add_new(0x00091001, "LO", "private")
    ds.add_new(0x00091002, "OB", b"\x00\x01")
    ds.PixelData = b"\x00" * 8
    item = Dataset()
    item.CodeValue = "C-163A8"
    ds.RadionuclideCodeSequence = Sequence([item])
    header = header_from_dataset(ds, calling_ae="GAMMA1", called_ae="AI_NODE")
    assert header == {
        "ImageType": "ORIGINAL\\PRIMARY\\STATIC\\EMISSION", "Rows": "128",
        "PixelSpacing": "2.5\\2.5", "PatientName": "Doe^Jane",
        "FrameIncrementPointer": "0054,0010\\0054,0020", "0009,1001": "private",
        "RadionuclideCodeSequence": [{"CodeValue": "C-163A8"}],
        "CallingAETitle": "GAMMA1", "CalledAETitle": "AI_NODE",
    }


# ---------------------------------------------------------------- the shipped default rules

@pytest.fixture(scope="module")
def default_rules():
    return load_rules(DEFAULT_RULES, known_pipelines={"thyroid"})


def _roundtrip(ds: Dataset) -> Dataset:
    """Write to memory and read back, as Orthanc would receive the file."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _nm(*, code: str | None = "C-163A8", scheme: str = "SRT", study: str = "Thyroid scintigraphy",
        series: str = "Thyroid ANT", body_part: str | None = "THYROID",
        image_type: tuple[str, ...] = STATIC, sop_class: str = NM_STORAGE,
        nm_module: bool = True, charset: str = "ISO_IR 192") -> dict:
    """Header of a planar NM image as a gamma camera writes it (one frame, photopeak window).

    The dataset is written to memory and read back before its header is taken, so the text goes
    through the declared character set as it would through Orthanc.
    """
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ImageType = "NM", list(image_type)
    ds.StudyDescription, ds.SeriesDescription = study, series
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.PatientName, ds.PatientID = "Phantom^Thyroid", "PH001"
    ds.Rows = ds.Columns = 128
    ds.PixelSpacing = [2.2, 2.2]
    ds.NumberOfFrames = 1
    if nm_module:
        ds.FrameIncrementPointer = [0x00540010, 0x00540020]
        ds.EnergyWindowVector, ds.DetectorVector = [1], [1]
        window, limits = Dataset(), Dataset()
        limits.EnergyWindowLowerLimit, limits.EnergyWindowUpperLimit = 126, 154
        window.EnergyWindowRangeSequence = Sequence([limits])
        window.EnergyWindowName = "Photopeak"
        ds.EnergyWindowInformationSequence = Sequence([window])
        detector = Dataset()
        detector.CollimatorType = "PINH"
        ds.DetectorInformationSequence = Sequence([detector])
        pharmaceutical = Dataset()
        pharmaceutical.Radiopharmaceutical = "pertechnetate"
        if code is not None:
            nuclide = Dataset()
            nuclide.CodeValue, nuclide.CodingSchemeDesignator = code, scheme
            nuclide.CodeMeaning = "radionuclide"
            pharmaceutical.RadionuclideCodeSequence = Sequence([nuclide])
        ds.RadiopharmaceuticalInformationSequence = Sequence([pharmaceutical])
    return header_from_dataset(_roundtrip(ds), calling_ae="GAMMA_CAM1", called_ae="ORTHANC")


def _variants(ruleset, header: dict) -> list[str]:
    return [rule.variant for rule in select(ruleset, header)]


def test_default_rules_use_dicom_radionuclide_codes(default_rules) -> None:
    # pydicom's DICOM code dictionary (CID 18): the SNOMED CT codes paired with the SRT ones.
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert f"C-163A8|{codes.SCT._99mTechnetium.value}" in text  # 72454006
    assert f"C-114A4|{codes.SCT._123Iodine.value}" in text  # 21572004


SC_GATEWAY = {"sop_class": SC_STORAGE, "image_type": ("DERIVED", "SECONDARY"), "nm_module": False}


@pytest.mark.parametrize(("header_args", "variant"), [
    ({"code": "C-163A8"}, "tc99m"),
    ({"code": "72454006", "scheme": "SCT"}, "tc99m"),
    ({"code": "C-114A4"}, "i123"),
    ({"code": "21572004", "scheme": "SCT"}, "i123"),
    ({"code": None}, "generic"),
    ({"code": "C-99999"}, "generic"),  # another nuclide code: the generic rule
    ({"study": "Schilddrüsenszintigraphie", "series": "SD ant", "body_part": "NECK"}, "tc99m"),
    ({"study": "Schilddrüse", "series": "", "body_part": None, "charset": "ISO_IR 100"}, "tc99m"),
    ({"study": "Scintigraphie thyroïdienne", "series": "ANT", "body_part": None}, "tc99m"),
    ({"study": "SCINTIGRAPHIE THYROIDE", "series": "ANT", "body_part": None}, "tc99m"),
    ({"study": "Gammagrafía de glándula tiroides", "series": "ANT", "body_part": "CUELLO"},
     "tc99m"),
    ({"study": "Cintilografia de tireóide", "series": "ANT", "body_part": None,
      "code": "C-114A4"}, "i123"),
    ({"study": "Neck", "series": "Thyroid 20min", "body_part": "NECK"}, "tc99m"),
    ({"study": "NM", "series": "ANT", "body_part": "THYROID"}, "tc99m"),
    (SC_GATEWAY, "sc-gateway"),
    ({**SC_GATEWAY, "image_type": (), "body_part": None}, "sc-gateway"),
])
def test_default_rules_select(default_rules, header_args: dict, variant: str) -> None:
    assert _variants(default_rules, _nm(**header_args)) == [variant]


@pytest.mark.parametrize(("header_args", "reason"), [
    ({"image_type": ("ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"),
      "study": "Thyroid cancer I-131"}, "ImageType: 'WHOLE BODY' is excluded"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "TOMO", "EMISSION")}, "ImageType: 'TOMO' is excluded"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "DYNAMIC", "EMISSION")},
     "ImageType: 'DYNAMIC' is excluded"),
    ({"study": "Parathyroid MIBI", "series": "Early", "body_part": "NECK"},
     "(excluded by '!BodyPartExamined|StudyDescription|SeriesDescription|ProtocolName')"),
    ({"study": "Nebenschilddrüsen-Szintigraphie", "series": "früh", "body_part": None},
     "'Nebenschilddrüsen-Szintigraphie' matches"),
    ({"study": "Bone scan", "series": "Spot neck", "body_part": "NECK"},
     "does not match 'thyr|schild|tiro|tireo'"),
    ({**SC_GATEWAY, "nm_module": True},
     "EnergyWindowInformationSequence: present (must be absent)"),
    ({**SC_GATEWAY, "image_type": ("DERIVED", "PRIMARY", "WHOLE BODY"),
      "study": "Thyroid carcinoma follow-up"}, "(excluded by '!ImageType')"),
    ({**SC_GATEWAY, "study": "Thyroid carcinoma follow-up", "series": "WB ant/post"},
     "SeriesDescription: 'WB ant/post' matches"),
])
def test_default_rules_refuse(default_rules, header_args: dict, reason: str) -> None:
    header = _nm(**header_args)
    assert select(default_rules, header) == []
    reasons = [o["reason"] for o in explain(default_rules, {"s": header})[0]["rules"]]
    assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPEG-lossy.dcm", "CT_small.dcm", "MR_small.dcm"])
def test_default_rules_ignore_pydicom_samples(default_rules, name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert select(default_rules, header_from_dataset(ds)) == []


def test_default_rules_ignore_sc_whole_body_even_with_a_thyroid_description(default_rules) -> None:
    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"), stop_before_pixels=True)
    header = header_from_dataset(ds)
    assert header["Modality"] == "NM" and header["SOPClassUID"] == SC_STORAGE
    header = copy.deepcopy(header) | {"StudyDescription": "Thyroid carcinoma follow-up"}
    assert select(default_rules, header) == []
    assert "(excluded by '!ImageType')" in match(default_rules.rules[-1], header)[1]


@pytest.mark.parametrize("code", ["C-114B1", "1368003"])
def test_default_rules_leave_i131_images_alone(default_rules, code: str) -> None:
    # The networks were trained on Tc-99m and I-123 images only.
    assert _variants(default_rules, _nm(code=code)) == []
