"""Exception classes of the plugin; the worker maps each to a FailStage stored on the study."""


class PluginError(Exception):
    """Base class of every error the plugin raises on purpose."""


class ConfigError(PluginError):
    """Our section of orthanc.json is invalid."""


class RulesError(PluginError):
    """A rules document is invalid; the message names the rule and the key."""


class ModelError(PluginError):
    """An ONNX model file is invalid, failed its self-test, or no model serves a task."""


class InputError(PluginError):
    """An input image cannot be processed (undecodable, empty, unexpected shape)."""


class WriterError(PluginError):
    """A result could not be encoded as DICOM."""
