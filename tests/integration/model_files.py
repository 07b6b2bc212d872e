"""What an ML engineer does to the models folder of a running node, for the integration tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[2]


def copy_shipped(target: Path) -> Path:
    """A private copy of the shipped models folder, for a node whose models a test changes."""
    shutil.copytree(ROOT / "models", target)
    return target


def prop(path: Path, key: str) -> str | None:
    """One metadata_props value of an ONNX file."""
    return next((p.value for p in onnx.load(path).metadata_props if p.key == key), None)


def served_file(models: Path, task: str) -> Path:
    """The file the registry serves for ``task`` when nothing is pinned: the highest version."""
    files = [p for p in models.glob("*.onnx") if prop(p, "task") == task]
    return max(files, key=lambda p: tuple(int(v) for v in prop(p, "version").split(".")))


def drop_version(source: Path, target: Path, version: str, *, shadow: bool = False) -> str:
    """Copy a model under a new version (same weights), optionally marked shadow; returns the name."""
    model = onnx.load(source)
    for entry in model.metadata_props:
        if entry.key == "version":
            entry.value = version
    if shadow:
        model.metadata_props.add(key="shadow", value="true")
    onnx.save(model, target)
    return target.name
