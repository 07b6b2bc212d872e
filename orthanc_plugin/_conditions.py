"""Conditions of a header rule (parsed at load, evaluated per series) and the small validation
helpers of ``rules.py``.

The header is a plain dict shaped like Orthanc's ``GET /instances/{id}/tags?simplify``: DICOM
keywords to strings (multi-valued joined with backslashes), sequences as lists of such dicts, plus
``CallingAETitle`` / ``CalledAETitle``. ``rules.py`` documents the condition syntax.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydicom.datadict import dictionary_VR, tag_for_keyword

AE_KEYS = ("CallingAETitle", "CalledAETitle")
Kind = Literal["absent", "regex", "number", "range", "terms"]


@dataclass(frozen=True)
class Condition:
    """One condition of a rule, validated at load; build it with :func:`parse_condition`.

    ``alternatives`` holds one keyword path per ``|``-separated alternative; ``negated`` is set by
    a leading ``!``. ``kind`` says which of the other fields is used.
    """

    key: str
    alternatives: tuple[tuple[str, ...], ...]
    negated: bool
    kind: Kind
    pattern: re.Pattern[str] | None = None
    folded_pattern: re.Pattern[str] | None = None
    number: float | None = None
    low: float | None = None
    high: float | None = None
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


def got(value: object) -> str:
    """Show a value from the rules document as JSON, shortened, for error messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def expect(ok: bool, key: str, expected: str, value: object) -> None:
    """Raise ValueError("key 'k': expected ..., got ...") unless ok."""
    if not ok:
        raise ValueError(f"key {key!r}: expected {expected}, got {got(value)}")


def is_text(value: object) -> bool:
    """True for a string that is not blank."""
    return isinstance(value, str) and bool(value.strip())


def check_keys(doc: Mapping, allowed: tuple[str, ...]) -> None:
    """Refuse the first key of doc that is not allowed."""
    for key in doc:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} (expected one of: {', '.join(allowed)})")


class DuplicateKeyError(Exception):
    """A JSON object repeats a key (json would silently keep the last one)."""


def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """object_pairs_hook refusing repeated keys."""
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a text ('Thyroïde' -> 'thyroide')."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def is_number(value: object) -> bool:
    """True for a finite JSON number (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_path(alternative: str, has_value: bool) -> tuple[str, ...]:
    """Split 'A/B/C' and check every part against pydicom's dictionary."""
    parts = tuple(alternative.split("/"))
    for i, part in enumerate(parts):
        if part in AE_KEYS:
            if len(parts) > 1:
                raise ValueError(f"{part} is not a DICOM attribute and cannot be in a path")
            continue
        tag = tag_for_keyword(part)
        if tag is None:
            raise ValueError(
                f"unknown DICOM keyword {part!r} "
                "(expected a DICOM keyword, CallingAETitle or CalledAETitle)"
            )
        is_sequence = dictionary_VR(tag) == "SQ"
        if i < len(parts) - 1 and not is_sequence:
            raise ValueError(f"{part!r} is not a sequence, so it cannot be followed by '/'")
        if i == len(parts) - 1 and is_sequence and has_value:
            raise ValueError(
                f"{part!r} is a sequence: give a path to an attribute inside it "
                f"(e.g. '{part}/CodeValue') or test its absence with '!{part}': null"
            )
    return parts


def _parse_terms(key: str, alternatives: tuple, negated: bool, value: list) -> Condition:
    """A list of strings: values that must all be present, '!TERM' for values that must not."""
    required: list[str] = []
    excluded: list[str] = []
    for term in value:
        is_excluded = term.startswith("!")
        name = term[1:] if is_excluded else term
        if not name.strip():
            raise ValueError(f"expected non-empty terms ('VALUE' or '!VALUE'), got {got(value)}")
        (excluded if is_excluded else required).append(name.strip())
    both = {fold(t) for t in required} & {fold(t) for t in excluded}
    if both:
        raise ValueError(f"term {sorted(both)[0]!r} is both required and excluded")
    return Condition(
        key, alternatives, negated, "terms", required=tuple(required), excluded=tuple(excluded)
    )


def parse_condition(key: object, value: object) -> Condition:
    """Parse one ``"key": value`` pair of a rule's ``conditions``.

    Parameters
    ----------
    key : object
        The key as written: keyword, sequence path with ``/``, alternatives with ``|``,
        optional leading ``!``.
    value : object
        The JSON value: string (regex), number, ``[low, high]``, list of terms, or null.

    Returns
    -------
    Condition
        The validated condition.

    Raises
    ------
    ValueError
        With a message saying what was expected and what was given (no rule name: the caller
        adds it).
    """
    if not isinstance(key, str) or not key.lstrip("!"):
        raise ValueError(f"expected a DICOM keyword as key, got {got(key)}")
    negated = key.startswith("!")
    alternatives = tuple(
        _parse_path(alt, value is not None) for alt in key[1 if negated else 0 :].split("|")
    )
    if value is None:
        if not negated:
            raise ValueError(
                "null means 'must be absent' and needs a '!' before the keyword "
                f"(e.g. '!{key}': null)"
            )
        return Condition(key, alternatives, True, "absent")
    if isinstance(value, str):
        if not value:
            raise ValueError('expected a non-empty regular expression, got ""')
        text = unicodedata.normalize("NFC", value)
        try:
            pattern = re.compile(text, re.IGNORECASE)
            folded = re.compile(fold(text), re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {got(value)}: {exc}") from exc
        return Condition(
            key, alternatives, negated, "regex", pattern=pattern, folded_pattern=folded
        )
    if is_number(value):
        return Condition(key, alternatives, negated, "number", number=float(value))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return _parse_terms(key, alternatives, negated, value)
    if isinstance(value, list) and any(v is None or is_number(v) for v in value):
        if len(value) != 2 or not all(v is None or is_number(v) for v in value):
            raise ValueError(f"expected a range [low, high], got {got(value)}")
        low, high = value
        if low is None and high is None:
            raise ValueError(
                f"expected a range [low, high] with at least one bound, got {got(value)}"
            )
        if low is not None and high is not None and low > high:
            raise ValueError(f"expected a range [low, high] with low <= high, got {got(value)}")
        return Condition(
            key, alternatives, negated, "range",
            low=None if low is None else float(low), high=None if high is None else float(high),
        )
    raise ValueError(
        "expected a regular expression (string), a number, a range [low, high], "
        f"a list of terms (strings), or null with '!', got {got(value)}"
    )


def _leaves(header: Mapping, path: tuple[str, ...]) -> list[object]:
    """Values at the end of a keyword path; a path through a sequence visits every item."""
    items: list[Mapping] = [header]
    for part in path[:-1]:
        items = [
            sub for item in items for sub in _as_list(item.get(part)) if isinstance(sub, Mapping)
        ]
    return [item[path[-1]] for item in items if path[-1] in item and item[path[-1]] is not None]


def _as_list(value: object) -> list:
    """A sequence value as a list (anything else gives an empty list)."""
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    """The stripped text of a leaf value; None for a sequence or other non-value."""
    if isinstance(value, str):
        return value.strip()
    if is_number(value):
        return str(value)
    return None


def _number_desc(cond: Condition) -> str:
    """'in [a, b]', '>= a', '<= b' or the number itself, for reasons."""
    low, high = cond.low, cond.high
    if cond.number is not None:
        return f"{cond.number:g}"
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def _in_bounds(cond: Condition, number: float) -> bool:
    """Whether a number satisfies a 'number' or 'range' condition."""
    if cond.kind == "number":
        return number == cond.number
    return (cond.low is None or number >= cond.low) and (cond.high is None or number <= cond.high)


def _check_value(cond: Condition, text: str) -> tuple[bool, str]:
    """Check one present value; the reason has no keyword prefix."""
    if cond.pattern is not None and cond.folded_pattern is not None:
        raw = unicodedata.normalize("NFC", text)
        if cond.pattern.search(raw) or cond.folded_pattern.search(fold(raw)):
            return True, f"{text!r} matches {cond.pattern.pattern!r}"
        return False, f"{text!r} does not match {cond.pattern.pattern!r}"
    if cond.kind == "terms":
        values = {fold(v.strip()) for v in text.split("\\")}
        for term in cond.excluded:
            if fold(term) in values:
                return False, f"{term!r} is excluded"
        for term in cond.required:
            if fold(term) not in values:
                return False, f"{term!r} is not among {text!r}"
        return True, f"{text!r} has {list(cond.required)}" if cond.required else f"{text!r}"
    for part in text.split("\\"):
        try:
            number = float(part)
        except ValueError:
            return False, f"{text!r} is not a number"
        if not _in_bounds(cond, number):
            return False, f"{text!r} is not {_number_desc(cond)}"
    return True, f"{text!r} is {_number_desc(cond)}"


def _check_path(cond: Condition, header: Mapping, path: tuple[str, ...]) -> tuple[bool, str]:
    """Check one alternative path; for 'absent', True means the attribute is absent."""
    name = "/".join(path)
    leaves = _leaves(header, path)
    present = [leaf for leaf in leaves if leaf != "" and leaf != [] and _text(leaf) != ""]
    if cond.kind == "absent":
        return (False, f"{name}: present") if present else (True, f"{name}: absent")
    if not present:
        return False, f"{name}: empty" if leaves else f"{name}: missing"
    details = []
    for leaf in present:
        text = _text(leaf)
        if text is None:
            ok, detail = False, "is a sequence, not a value"
        else:
            ok, detail = _check_value(cond, text)
        if ok:
            return True, f"{name}: {detail}"
        details.append(detail)
    if len(details) == 1:
        return False, f"{name}: {details[0]}"
    return False, f"{name}: no item matches ({'; '.join(details[:3])})"


def evaluate(cond: Condition, header: Mapping) -> tuple[bool, str]:
    """Check a condition against a header.

    Parameters
    ----------
    cond : Condition
        The condition.
    header : Mapping
        The series header (see the module docstring).

    Returns
    -------
    tuple[bool, str]
        Whether it holds, and why (the failing value on a miss, the matching value on a hit).
    """
    results = [_check_path(cond, header, path) for path in cond.alternatives]
    if cond.kind == "absent":
        failed = [reason for ok, reason in results if not ok]
        if failed:
            return False, f"{failed[0]} (must be absent)"
        return True, " and ".join(reason for _, reason in results)
    hits = [reason for ok, reason in results if ok]
    if cond.negated:
        if hits:
            return False, f"{hits[0]} (excluded by {cond.key!r})"
        return True, f"{cond.key}: no match, as required"
    if hits:
        return True, hits[0]
    return False, "; ".join(reason for _, reason in results)
