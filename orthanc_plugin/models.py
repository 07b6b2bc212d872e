"""ONNX model registry: self-describing files in a folder, checked, self-tested and hot-swapped.

The contract with ``training/export.py`` is written in ``models/README.md``. In-flight work keeps
the ``LoadedModel`` objects it took from ``snapshot()``, so a swap never changes a running study.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import ModelError
from .findings import ModelInfo
from .imaging import resample

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("task", "name", "version", "input_size", "normalisation", "labels",
                 "output_activation", "thresholds")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class ModelSpec:
    """What a model file says about itself in its ``metadata_props``."""

    task: str
    name: str
    version: str
    input_size: tuple[int, int]
    normalisation: dict = field(hash=False)
    labels: tuple[str, ...]
    output_activation: str
    thresholds: dict = field(hash=False)
    metrics: dict = field(hash=False, default_factory=dict)
    training_data: str = ""
    shadow: bool = False  # metadata "shadow": "true": run beside the served version, never shown

    @property
    def version_key(self) -> tuple[int, int, int]:
        """The version as integers, for ordering."""
        match = _VERSION.match(self.version)
        assert match is not None  # checked by parse_spec
        return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def parse_spec(props: dict[str, str], *, source: str) -> ModelSpec:
    """Validate ``metadata_props`` against the contract and return a ModelSpec.

    Raises
    ------
    ModelError
        Naming the file and the key that is missing or wrong.
    """
    missing = [key for key in REQUIRED_KEYS if key not in props]
    if missing:
        raise ModelError(f"{source}: metadata_props lack {', '.join(missing)} (see models/README.md)")

    def load_json(key: str) -> object:
        try:
            return json.loads(props[key])
        except json.JSONDecodeError as error:
            raise ModelError(f"{source}: metadata_props[{key!r}] is not JSON: {error}") from error

    if not _VERSION.match(props["version"]):
        raise ModelError(f"{source}: version {props['version']!r} is not MAJOR.MINOR.PATCH")
    size = load_json("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ModelError(f"{source}: input_size must be [height, width], got {props['input_size']!r}")
    labels = load_json("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(v, str) for v in labels)):
        raise ModelError(f"{source}: labels must be a non-empty list of names, got {props['labels']!r}")
    normalisation = load_json("normalisation")
    if not (isinstance(normalisation, dict) and normalisation.get("method") == "percentile"
            and isinstance(normalisation.get("percentile"), (int, float))):
        raise ModelError(f"{source}: normalisation must be {{'method': 'percentile', 'percentile': p, "
                         f"'clip': c}}, got {props['normalisation']!r}")
    activation = props["output_activation"]
    if activation not in ("softmax", "sigmoid"):
        raise ModelError(f"{source}: output_activation must be softmax or sigmoid, got {activation!r}")
    thresholds = load_json("thresholds")
    if not isinstance(thresholds, dict):
        raise ModelError(f"{source}: thresholds must be a JSON object, got {props['thresholds']!r}")
    metrics = load_json("metrics") if "metrics" in props else {}
    return ModelSpec(task=props["task"], name=props["name"], version=props["version"],
                     input_size=(size[0], size[1]), normalisation=normalisation, labels=tuple(labels),
                     output_activation=activation, thresholds=thresholds,
                     metrics=metrics if isinstance(metrics, dict) else {},
                     training_data=props.get("training_data", ""),
                     shadow=props.get("shadow", "").lower() == "true")


class LoadedModel:
    """One model file, loaded in an onnxruntime session, with its declared pre/post-processing."""

    def __init__(self, path: Path, providers: Sequence[str]) -> None:
        self.path = path
        data = path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            self.session = ort.InferenceSession(data, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf classes
            raise ModelError(f"{path.name}: onnxruntime cannot load it: {error}") from error
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.spec = parse_spec(props, source=path.name)
        self.provider = self.session.get_providers()[0]
        self._input_name = self.session.get_inputs()[0].name

    @property
    def info(self) -> ModelInfo:
        """Provenance written into every result this model contributes to."""
        return ModelInfo(task=self.spec.task, name=self.spec.name, version=self.spec.version,
                         sha256=self.sha256, provider=self.provider)

    def normalise(self, frame: np.ndarray) -> np.ndarray:
        """Resample the whole frame to the input size and normalise counts as declared."""
        image = resample(np.asarray(frame, dtype=np.float32), self.spec.input_size)
        scale = float(np.percentile(image, self.spec.normalisation["percentile"]))
        image = image / (scale if scale > 0 else 1.0)
        return np.clip(image, 0.0, float(self.spec.normalisation.get("clip", 2.0))).astype(np.float32)

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """Return probabilities, shape (C, *input_size), for one 2-D frame of counts."""
        tensor = self.normalise(frame)[np.newaxis, np.newaxis]
        logits = self.session.run(None, {self._input_name: tensor})[0]
        expected = (1, len(self.spec.labels), *self.spec.input_size)
        if logits.shape != expected:
            raise ModelError(f"{self.path.name}: output shape {logits.shape}, expected {expected}")
        logits = logits[0].astype(np.float32)
        if self.spec.output_activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
        return shifted / shifted.sum(axis=0, keepdims=True)

    def self_test(self) -> None:
        """Run the model on a synthetic two-blob frame; refuse it if the output is unusable."""
        height, width = self.spec.input_size
        rows, cols = np.mgrid[0:height, 0:width]
        frame = np.zeros((height, width), dtype=np.float32)
        for centre in (0.35, 0.65):
            frame += 100 * np.exp(-(((rows - height / 2) / (height / 5)) ** 2
                                    + ((cols - width * centre) / (width / 10)) ** 2))
        for candidate in (frame, np.zeros_like(frame)):
            probabilities = self.predict(candidate)
            if not np.all(np.isfinite(probabilities)):
                raise ModelError(f"{self.path.name}: self-test produced non-finite outputs")


class ModelRegistry:
    """Watches a folder of ONNX files and serves one valid version per task.

    Served: the pinned file of a task (set by promote/rollback), else its highest version among
    the files not marked shadow. Shadow files (metadata ``shadow`` = ``true``, or named in
    ``shadow_files``) are loaded and self-tested, run beside the served version for comparison,
    and never produce visible results.
    """

    def __init__(self, directory: str | Path, providers: Sequence[str], *,
                 shadow_files: Sequence[str] = ()) -> None:
        self.directory = Path(directory)
        available = ort.get_available_providers()
        self.providers = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        logger.info("onnxruntime %s: providers %s (available: %s)", ort.__version__,
                    self.providers, available)
        self.shadow_files = frozenset(shadow_files)
        self._lock = threading.Lock()
        self._seen: dict[Path, tuple[float, int]] = {}
        self._loaded: dict[Path, LoadedModel] = {}
        self._refused: dict[Path, str] = {}
        self.pins: dict[str, str] = {}  # task -> file name chosen by promote/rollback

    def refresh(self) -> bool:
        """Load new or changed files, forget removed ones. Returns True when anything changed."""
        files = {p: (p.stat().st_mtime, p.stat().st_size) for p in sorted(self.directory.glob("*.onnx"))}
        changed = False
        for path in set(self._seen) - set(files):
            with self._lock:
                self._loaded.pop(path, None)
                self._refused.pop(path, None)
            del self._seen[path]
            logger.info("model file removed: %s", path.name)
            changed = True
        for path, stamp in files.items():
            if self._seen.get(path) == stamp:
                continue
            self._seen[path] = stamp
            changed = True
            try:
                model = LoadedModel(path, self.providers)
                model.self_test()
            except (ModelError, OSError) as error:
                with self._lock:
                    self._loaded.pop(path, None)
                    self._refused[path] = str(error)
                logger.warning("model refused: %s", error)
                continue
            with self._lock:
                self._loaded[path] = model
                self._refused.pop(path, None)
            logger.info("model loaded: %s %s %s (task %s, sha256 %s, provider %s%s)", path.name,
                        model.spec.name, model.spec.version, model.spec.task, model.sha256[:12],
                        model.provider, ", shadow" if self.is_shadow(model) else "")
        return changed

    def is_shadow(self, model: LoadedModel) -> bool:
        """Marked shadow in its metadata or in the configuration (a pin overrides it)."""
        if self.pins.get(model.spec.task) == model.path.name:
            return False
        return model.spec.shadow or model.path.name in self.shadow_files

    def _models(self) -> list[LoadedModel]:
        with self._lock:
            return sorted(self._loaded.values(), key=lambda m: (m.spec.version_key, m.path.name))

    def snapshot(self, versions: Mapping[str, str] | None = None) -> dict[str, LoadedModel]:
        """Return {task: served model}; ``versions`` ({task: version}) asks for given versions.

        Raises
        ------
        ModelError
            When a requested version is not loaded.
        """
        models = self._models()
        served: dict[str, LoadedModel] = {}
        for model in models:
            if not self.is_shadow(model):
                served[model.spec.task] = model  # ascending order: the highest version wins
        for task, name in dict(self.pins).items():  # a copy: promote() may change pins meanwhile
            pinned = next((m for m in models if m.path.name == name), None)
            if pinned is not None:
                served[task] = pinned
        for task, version in (versions or {}).items():
            chosen = [m for m in models if m.spec.task == task and m.spec.version == version]
            if not chosen:
                raise ModelError(f"no loaded model of task {task!r} has version {version!r}")
            served[task] = chosen[-1]
        return served

    def shadows(self) -> dict[str, list[LoadedModel]]:
        """{task: shadow models} not currently served."""
        found: dict[str, list[LoadedModel]] = {}
        for model in self._models():
            if self.is_shadow(model):
                found.setdefault(model.spec.task, []).append(model)
        return found

    def promote(self, file_name: str) -> dict[str, str]:
        """Serve ``file_name`` for its task from now on; returns {task, previous, served}."""
        model = next((m for m in self._models() if m.path.name == file_name), None)
        if model is None:
            raise ModelError(f"no loaded model file {file_name!r} (see /ai/status)")
        previous = self.snapshot().get(model.spec.task)
        self.pins[model.spec.task] = file_name
        logger.info("promoted %s for task %s (was %s)", file_name, model.spec.task,
                    previous.path.name if previous else None)
        return {"task": model.spec.task, "previous": previous.path.name if previous else "",
                "served": file_name}

    def rollback(self, task: str) -> dict[str, str]:
        """Serve the highest non-shadow version below the one served now for ``task``."""
        current = self.snapshot().get(task)
        if current is None:
            raise ModelError(f"no model serves task {task!r}")
        older = [m for m in self._models() if m.spec.task == task and not self.is_shadow(m)
                 and m.spec.version_key < current.spec.version_key]
        if not older:
            raise ModelError(f"task {task!r}: no version older than {current.spec.version} to roll back to")
        self.pins[task] = older[-1].path.name
        logger.info("rolled back task %s from %s to %s", task, current.path.name, older[-1].path.name)
        return {"task": task, "previous": current.path.name, "served": older[-1].path.name}

    def status(self) -> dict:
        """JSON-ready description of served, shadow, other and refused files, and the pins."""
        served = {id(m) for m in self.snapshot().values()}
        with self._lock:
            refused = dict(self._refused)
        return {
            "directory": str(self.directory),
            "providers": self.providers,
            "pins": dict(self.pins),
            "models": [
                {"file": m.path.name, "task": m.spec.task, "name": m.spec.name,
                 "version": m.spec.version, "sha256": m.sha256, "provider": m.provider,
                 "served": id(m) in served, "shadow": self.is_shadow(m), "metrics": m.spec.metrics}
                for m in sorted(self._models(), key=lambda m: (m.spec.task, m.spec.version_key))
            ],
            "refused": [{"file": p.name, "reason": r} for p, r in sorted(refused.items())],
        }
