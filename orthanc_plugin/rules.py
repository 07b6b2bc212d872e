"""Header rules: which pipeline(s) apply to a series, decided from its DICOM header alone.

A rules file is JSON (``rules/README.md`` has worked examples)::

    {"version": 1, "description": "optional free text",
     "rules": [{"name": "thyroid-tc99m", "description": "optional free text",
                "pipeline": "thyroid", "variant": "tc99m",
                "options": {"nodule_probability": 0.5},
                "conditions": {"Modality": "^NM$", "ImageType": ["STATIC", "!WHOLE BODY"]},
                "forward": {"destination": "PACS", "what": "results", "retries": 3}}]}

``name`` (letters, digits, ``.``, ``_``, ``-``; unique), ``pipeline`` (a known pipeline) and a
non-empty ``conditions`` object are required; ``variant`` defaults to ``"default"``, ``options``
(strings, numbers, booleans) to ``{}``, ``forward`` to none (``what`` is ``"results"`` or
``"study"``, ``retries`` 0-10, default 3). Unknown keys are refused.

Conditions, all of which must hold (a missing or empty attribute never matches):

- ``"Key": "regex"``: case- and accent-insensitive ``re.search`` on the value (multi-valued
  values are one string joined with backslashes).
- ``"Key": 128``: numeric equality; ``"Key": [low, high]``: inclusive range, either bound may be
  null. Every value of a multi-valued attribute must qualify.
- ``"Key": ["STATIC", "!WHOLE BODY"]``: every listed value present, every ``!`` value absent,
  each compared case-insensitively with whole values.
- ``"A/B/C"``: a path through sequences; holds if it holds for any item on the path.
- ``"A|B"``: alternatives; holds if it holds for any of them.
- ``"!Key": null``: the attribute must be absent (or empty); ``"!Key": <condition>``: the
  condition must not hold (a missing attribute satisfies it).

Keys are DICOM keywords (checked with pydicom's dictionary), ``CallingAETitle`` or
``CalledAETitle``. For each pipeline the first matching rule in file order is selected, so
specific rules come before generic ones; rules of different pipelines may all apply.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from ._conditions import (
    Condition, DuplicateKeyError, check_keys, evaluate, expect, got, is_number, is_text,
    no_duplicates, parse_condition,
)
from .errors import RulesError
from .headers import header_from_dataset

__all__ = [
    "Condition", "Forward", "Rule", "RuleSet", "RulesHolder", "explain", "header_from_dataset",
    "load_rules", "match", "parse_rules", "select",
]

logger = logging.getLogger(__name__)

OptionValue = str | int | float | bool
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOP_KEYS = ("version", "description", "rules")
_RULE_KEYS = ("name", "description", "pipeline", "variant", "options", "conditions", "forward")
_FORWARD_KEYS = ("destination", "what", "retries")


@dataclass(frozen=True)
class Forward:
    """Where to send what after a rule's pipeline has run (a ``DicomModalities`` alias)."""

    destination: str
    what: Literal["results", "study"]
    retries: int = 3

    def __post_init__(self) -> None:
        expect(is_text(self.destination), "destination", "a non-empty string", self.destination)
        expect(self.what in ("results", "study"), "what", '"results" or "study"', self.what)
        retries = self.retries
        expect(type(retries) is int and 0 <= retries <= 10, "retries",
               "an integer from 0 to 10", retries)


@dataclass(frozen=True)
class Rule:
    """One rule: when all its conditions hold, its pipeline runs with its variant and options."""

    name: str
    pipeline: str
    variant: str
    options: Mapping[str, OptionValue] = field(hash=False)
    conditions: tuple[Condition, ...]
    forward: Forward | None = None
    description: str = ""

    def __post_init__(self) -> None:
        expect(isinstance(self.name, str) and bool(_NAME.fullmatch(self.name)), "name",
               "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", self.name)
        expect(is_text(self.pipeline), "pipeline", "a non-empty string", self.pipeline)
        expect(is_text(self.variant), "variant", "a non-empty string", self.variant)
        expect(isinstance(self.description, str), "description", "a string", self.description)
        expect(bool(self.conditions) and all(isinstance(c, Condition) for c in self.conditions),
               "conditions", "at least one condition", list(self.conditions))
        expect(self.forward is None or isinstance(self.forward, Forward), "forward",
               "a Forward", self.forward)
        expect(isinstance(self.options, Mapping), "options", "a JSON object", self.options)
        for key, value in self.options.items():
            if not (is_text(key) and (isinstance(value, (str, bool)) or is_number(value))):
                raise ValueError(
                    f"option {key!r}: expected a string, number or true/false, got {got(value)}"
                )
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file, in file order."""

    rules: tuple[Rule, ...]
    source: str
    description: str = ""

    def __post_init__(self) -> None:
        names = [rule.name for rule in self.rules]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"rule {name!r}, key 'name': duplicate rule name")


def _parse_rule(doc: object, number: int, known_pipelines: Collection[str]) -> Rule:
    """Parse one rule; ValueError messages start with the rule's name."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"rule #{number}: expected a JSON object, got {got(doc)}")
    name = doc.get("name")
    valid_name = isinstance(name, str) and _NAME.fullmatch(name)
    where = f"rule {name!r}" if valid_name else f"rule #{number}"
    try:
        check_keys(doc, _RULE_KEYS)
        pipeline, conditions = doc.get("pipeline"), doc.get("conditions")
        if isinstance(pipeline, str) and pipeline not in known_pipelines:
            known = ", ".join(sorted(known_pipelines)) or "none"
            raise ValueError(f"key 'pipeline': unknown pipeline {got(pipeline)} (known: {known})")
        expect(isinstance(conditions, Mapping) and bool(conditions), "conditions",
               "a non-empty JSON object", conditions)
        parsed = []
        for key, value in conditions.items():  # type: ignore[union-attr]
            try:
                parsed.append(parse_condition(key, value))
            except ValueError as exc:
                raise ValueError(f"condition {key!r}: {exc}") from None
        forward_doc = doc.get("forward")
        if forward_doc is not None:
            try:
                if not isinstance(forward_doc, Mapping):
                    raise ValueError(f"expected a JSON object, got {got(forward_doc)}")
                check_keys(forward_doc, _FORWARD_KEYS)
                forward_doc = Forward(forward_doc.get("destination"), forward_doc.get("what"),
                                      forward_doc.get("retries", 3))
            except ValueError as exc:
                raise ValueError(f"forward: {exc}") from None
        return Rule(name=name, pipeline=pipeline, variant=doc.get("variant", "default"),
                    options=doc.get("options", {}), conditions=tuple(parsed), forward=forward_doc,
                    description=doc.get("description", ""))
    except ValueError as exc:
        raise ValueError(f"{where}, {exc}") from None


def parse_rules(
    doc: object, *, known_pipelines: Collection[str], source: str = "<dict>"
) -> RuleSet:
    """Validate a rules document (already decoded from JSON) and build its RuleSet.

    Parameters
    ----------
    doc : object
        The decoded JSON document.
    known_pipelines : Collection[str]
        Names of the pipelines this node has; any other name is an error.
    source : str
        Where the document came from, used as the prefix of error messages.

    Returns
    -------
    RuleSet
        The validated rules, in document order.

    Raises
    ------
    RulesError
        On the first problem, naming the rule and key and saying what was expected.
    """
    try:
        if not isinstance(doc, Mapping):
            raise ValueError(f"expected a JSON object with 'version' and 'rules', got {got(doc)}")
        check_keys(doc, _TOP_KEYS)
        version, rules = doc.get("version"), doc.get("rules")
        description = doc.get("description", "")
        expect(type(version) is int and version == 1, "version", "1", version)
        expect(isinstance(description, str), "description", "a string", description)
        expect(isinstance(rules, list), "rules", "a list of rules", rules)
        parsed = tuple(_parse_rule(rule, i, known_pipelines) for i, rule in enumerate(rules, 1))
        return RuleSet(parsed, source, description)
    except ValueError as exc:
        raise RulesError(f"{source}: {exc}") from None


def load_rules(path: str | os.PathLike[str], *, known_pipelines: Collection[str]) -> RuleSet:
    """Read and validate a rules file.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON rules file (UTF-8).
    known_pipelines : Collection[str]
        Names of the pipelines this node has.

    Returns
    -------
    RuleSet
        The validated rules; ``source`` is the path.

    Raises
    ------
    RulesError
        If the file cannot be read, is not valid JSON (with line and column) or is invalid.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc}") from exc
    except json.JSONDecodeError as exc:
        where = f"{path}, line {exc.lineno} column {exc.colno}"
        raise RulesError(f"{where}: invalid JSON: {exc.msg}") from exc
    except DuplicateKeyError as exc:
        raise RulesError(f"{path}: {exc}") from None
    return parse_rules(doc, known_pipelines=known_pipelines, source=str(path))


def match(rule: Rule, header: Mapping[str, object]) -> tuple[bool, str]:
    """Check every condition of a rule against one series header.

    Parameters
    ----------
    rule : Rule
        The rule.
    header : Mapping[str, object]
        The header (see :func:`header_from_dataset` for its shape).

    Returns
    -------
    tuple[bool, str]
        ``(True, summary of what matched)``, or ``(False, reason)`` naming the first failing
        condition, e.g. ``"Modality: 'CT' does not match '^NM$'"``.
    """
    hits = []
    for cond in rule.conditions:
        ok, reason = evaluate(cond, header)
        if not ok:
            return False, reason
        hits.append(reason)
    return True, "; ".join(hits)


def select(ruleset: RuleSet, header: Mapping[str, object]) -> list[Rule]:
    """The rules that apply to a series: for each pipeline, the first matching rule in file order.

    Parameters
    ----------
    ruleset : RuleSet
        The rules.
    header : Mapping[str, object]
        The series header.

    Returns
    -------
    list[Rule]
        At most one rule per pipeline, in file order.
    """
    chosen: dict[str, Rule] = {}
    for rule in ruleset.rules:
        if rule.pipeline not in chosen and match(rule, header)[0]:
            chosen[rule.pipeline] = rule
    return [rule for rule in ruleset.rules if chosen.get(rule.pipeline) is rule]


def explain(
    ruleset: RuleSet, headers: Mapping[str, Mapping[str, object]]
) -> list[dict[str, object]]:
    """Tell, for each series, which rules matched, which were selected and why.

    Parameters
    ----------
    ruleset : RuleSet
        The rules.
    headers : Mapping[str, Mapping]
        Series label (e.g. Orthanc series id) to header.

    Returns
    -------
    list[dict]
        JSON-serialisable, one item per series in the order of ``headers``:
        ``{"series": label, "rules": [{"rule", "pipeline", "variant", "matched", "selected",
        "reason"}, ...]}`` with the rules in file order.
    """
    result: list[dict[str, object]] = []
    for label, header in headers.items():
        selected = {rule.name for rule in select(ruleset, header)}
        outcomes = []
        for rule in ruleset.rules:
            matched, reason = match(rule, header)
            outcomes.append({
                "rule": rule.name, "pipeline": rule.pipeline, "variant": rule.variant,
                "matched": matched, "selected": rule.name in selected, "reason": reason,
            })
        result.append({"series": label, "rules": outcomes})
    return result


class RulesHolder:
    """The rules in force, re-read from their file when it changes; a bad file is refused.

    Parameters
    ----------
    path : str or os.PathLike
        The rules file.
    known_pipelines : Collection[str]
        Names of the pipelines this node has.

    Raises
    ------
    RulesError
        If the file is invalid at construction (there are no previous rules to keep).
    """

    def __init__(self, path: str | os.PathLike[str], *, known_pipelines: Collection[str]) -> None:
        self._path = Path(path)
        self._known = tuple(known_pipelines)
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._current = load_rules(self._path, known_pipelines=self._known)
        self._last_error: str | None = None
        logger.info("rules loaded from %s: %d rule(s)", self._path, len(self._current.rules))

    @property
    def path(self) -> Path:
        """The rules file."""
        return self._path

    @property
    def current(self) -> RuleSet:
        """The RuleSet in force."""
        return self._current

    @property
    def last_error(self) -> str | None:
        """Why the latest version of the file was refused, or None if it is in force."""
        return self._last_error

    def _stat(self) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of the file, or None if it cannot be read."""
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since the last look.

        Returns
        -------
        bool
            True if new rules are now in force; False if the file is unchanged or its new
            version was refused (then the previous rules stay in force and ``last_error`` says why).
        """
        with self._lock:
            signature = self._stat()
            if signature == self._signature:
                return False
            self._signature = signature  # a refused version is reported once, not at every poll
            try:
                ruleset = load_rules(self._path, known_pipelines=self._known)
            except RulesError as exc:
                self._last_error = str(exc)
                logger.error("rules file refused, previous rules stay in force: %s", exc)
                return False
            self._current = ruleset
            self._last_error = None
            logger.info("rules reloaded from %s: %d rule(s)", self._path, len(ruleset.rules))
            return True
