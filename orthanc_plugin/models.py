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
from collections.abc import Sequence
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
                     training_data=props.get("training_data", ""))


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
    """Watches a folder of ONNX files and serves the highest valid version per task."""

    def __init__(self, directory: str | Path, providers: Sequence[str]) -> None:
        self.directory = Path(directory)
        available = ort.get_available_providers()
        self.providers = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        logger.info("onnxruntime %s: providers %s (available: %s)", ort.__version__,
                    self.providers, available)
        self._lock = threading.Lock()
        self._seen: dict[Path, tuple[float, int]] = {}
        self._loaded: dict[Path, LoadedModel] = {}
        self._refused: dict[Path, str] = {}

    def refresh(self) -> bool:
        """Load new or changed files, forget removed ones. Returns True when anything changed."""
        files = {p: (p.stat().st_mtime, p.stat().st_size) for p in sorted(self.directory.glob("*.onnx"))}
        changed = False
        for path in set(self._seen) - set(files):
            with self._lock:
                self._loaded.pop(path, None)
                self._refused.pop(path, None)
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
            logger.info("model loaded: %s %s %s (task %s, sha256 %s, provider %s)", path.name,
                        model.spec.name, model.spec.version, model.spec.task, model.sha256[:12],
                        model.provider)
        return changed

    def snapshot(self) -> dict[str, LoadedModel]:
        """Return {task: served model}: the highest version per task (ties: newest file name)."""
        with self._lock:
            models = list(self._loaded.values())
        best: dict[str, LoadedModel] = {}
        for model in sorted(models, key=lambda m: (m.spec.version_key, m.path.name)):
            best[model.spec.task] = model
        return best

    def status(self) -> dict:
        """JSON-ready description of served, shadowed-by-newer and refused files."""
        served = {id(m) for m in self.snapshot().values()}
        with self._lock:
            loaded = list(self._loaded.values())
            refused = dict(self._refused)
        return {
            "directory": str(self.directory),
            "providers": self.providers,
            "models": [
                {"file": m.path.name, "task": m.spec.task, "name": m.spec.name,
                 "version": m.spec.version, "sha256": m.sha256, "provider": m.provider,
                 "served": id(m) in served, "metrics": m.spec.metrics}
                for m in sorted(loaded, key=lambda m: (m.spec.task, m.spec.version_key))
            ],
            "refused": [{"file": p.name, "reason": r} for p, r in sorted(refused.items())],
        }
