"""Our section of orthanc.json ("AiNode"), read once into a frozen object with one set of defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

SECTION = "AiNode"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the AI node. Keys in orthanc.json are the CamelCase of these field names."""

    enabled: bool = True
    models_directory: str = str(REPO_ROOT / "models")
    rules_file: str = str(REPO_ROOT / "rules" / "default.json")
    # How often the models folder and the rules file are checked for changes.
    poll_seconds: float = 2.0
    # Attempts per study before it is parked as failed (an admin can re-run it over REST).
    max_attempts: int = 3
    # A study touched before a restart counts as stable once its LastUpdate is this old.
    stable_age_seconds: int = 60
    # Patient-plane size of a pixel, when the site has calibrated its camera; None: sizes are
    # reported from the stored PixelSpacing and flagged "uncalibrated".
    calibration_mm_per_pixel: float | None = None
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    # Model files (names in the models folder) to run in shadow mode, besides those whose own
    # metadata says "shadow": "true".
    shadow_models: tuple[str, ...] = ()
    # Seconds between checks of a forwarding job, and how long one may take before it counts as failed.
    forward_poll_seconds: float = 1.0
    forward_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"{SECTION}.MaxAttempts: expected an integer >= 1, got {self.max_attempts!r}")
        if self.poll_seconds <= 0:
            raise ConfigError(f"{SECTION}.PollSeconds: expected a positive number, got {self.poll_seconds!r}")
        if self.stable_age_seconds < 0:
            raise ConfigError(
                f"{SECTION}.StableAgeSeconds: expected a number >= 0, got {self.stable_age_seconds!r}")
        if self.calibration_mm_per_pixel is not None and self.calibration_mm_per_pixel <= 0:
            raise ConfigError(f"{SECTION}.CalibrationMmPerPixel: expected a positive number or null, "
                              f"got {self.calibration_mm_per_pixel!r}")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


_FIELDS = {_camel(f.name): f for f in dataclasses.fields(NodeConfig)}


def parse_config(section: Mapping[str, object] | None, *, base_dir: Path = REPO_ROOT) -> NodeConfig:
    """Build a NodeConfig from the "AiNode" section of Orthanc's configuration.

    Parameters
    ----------
    section:
        The JSON object of the section, or None when the section is absent (all defaults).
    base_dir:
        Folder that relative paths are resolved against.

    Raises
    ------
    ConfigError
        On an unknown key or a value of the wrong type, naming the key.
    """
    if section is None:
        return NodeConfig()
    if not isinstance(section, Mapping):
        raise ConfigError(f"{SECTION}: expected a JSON object, got {type(section).__name__}")
    values: dict[str, object] = {}
    for key, value in section.items():
        if key not in _FIELDS:
            raise ConfigError(f"{SECTION}: unknown key {key!r}; known keys: {', '.join(sorted(_FIELDS))}")
        field = _FIELDS[key]
        values[field.name] = _convert(key, field.name, value, base_dir)
    return NodeConfig(**values)


def _convert(key: str, name: str, value: object, base_dir: Path) -> object:
    default = getattr(NodeConfig, name, None)
    where = f"{SECTION}.{key}"
    if name in ("models_directory", "rules_file"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        path = Path(value)
        return str(path if path.is_absolute() else base_dir / path)
    if name == "providers":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            raise ConfigError(f"{where}: expected a list of onnxruntime provider names, got {value!r}")
        return tuple(value)
    if name == "shadow_models":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.endswith(".onnx") for v in value):
            raise ConfigError(f"{where}: expected a list of .onnx file names, got {value!r}")
        return tuple(value)
    if name == "calibration_mm_per_pixel":
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}: expected a number or null, got {value!r}")
        return None if value is None else float(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return type(default)(value)
    raise ConfigError(f"{where}: unsupported value {value!r}")  # pragma: no cover - all fields handled
