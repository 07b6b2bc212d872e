"""The one module besides entry.py that imports ``orthanc``: REST calls, logging, routes.

Everything Orthanc-specific (CamelCase API, exceptions, RestOutput) is translated here into the
plain calls of ``study.OrthancApi``, Python logging and ``rest.Routes`` tuples.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

import orthanc

from .rest import ROUTES, Routes
from .state import OrthancCallError

# Orthanc error codes meaning "no such resource / item".
_NOT_FOUND = {"UNKNOWN_RESOURCE", "INEXISTENT_ITEM", "INEXISTENT_FILE", "INEXISTENT_TAG"}


def _call(function: Callable, uri: str, *args: object) -> object:
    try:
        return function(uri, *args)
    except orthanc.OrthancException as error:
        code = error.args[0] if error.args else None
        name = getattr(code, "name", str(code))
        raise OrthancCallError(f"{function.__name__} {uri}: {error}",
                               not_found=name in _NOT_FOUND) from error


class OrthancRestApi:
    """Calls Orthanc's REST API in-process (no HTTP, no credentials needed)."""

    def get_json(self, uri: str) -> object:
        """GET and parse JSON."""
        return json.loads(_call(orthanc.RestApiGet, uri))  # type: ignore[arg-type]

    def get_bytes(self, uri: str) -> bytes:
        """GET raw bytes (a DICOM file, a metadata value)."""
        return _call(orthanc.RestApiGet, uri)  # type: ignore[return-value]

    def post(self, uri: str, body: bytes | str) -> object:
        """POST; the answer parsed as JSON when it is JSON."""
        answer = _call(orthanc.RestApiPost, uri, body)
        try:
            return json.loads(answer)  # type: ignore[arg-type]
        except (json.JSONDecodeError, UnicodeDecodeError):
            return answer

    def put(self, uri: str, body: bytes | str) -> None:
        """PUT (metadata)."""
        _call(orthanc.RestApiPut, uri, body)

    def get_global(self, index: int, default: str) -> str:
        """Read an Orthanc global property (stored in its database)."""
        return orthanc.GetGlobalProperty(index, default)

    def set_global(self, index: int, value: str) -> None:
        """Write an Orthanc global property."""
        orthanc.SetGlobalProperty(index, value)


class OrthancLogHandler(logging.Handler):
    """Forwards Python logging to Orthanc's log, so one log holds everything."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[ai-node] {record.name}: {self.format(record)}"
            if record.levelno >= logging.ERROR:
                orthanc.LogError(text)
            elif record.levelno >= logging.WARNING:
                orthanc.LogWarning(text)
            else:
                orthanc.LogInfo(text)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def install_logging(level: int = logging.INFO) -> None:
    """Route the plugin's loggers to Orthanc's log (once)."""
    root = logging.getLogger("orthanc_plugin")
    if not any(isinstance(h, OrthancLogHandler) for h in root.handlers):
        root.addHandler(OrthancLogHandler())
    root.setLevel(level)
    root.propagate = False


def read_section(name: str) -> object:
    """Our section of Orthanc's configuration, or None."""
    return json.loads(orthanc.GetConfiguration()).get(name)


def _user(headers: dict) -> str:
    """The user name of an HTTP Basic Authorization header ('' when absent)."""
    value = headers.get("authorization", "")
    if not value.lower().startswith("basic "):
        return ""
    try:
        return base64.b64decode(value[6:]).decode("utf-8", "replace").split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return ""


def register_routes(routes: Routes) -> None:
    """Register the /ai/ REST routes with Orthanc."""

    def answer(output, result: tuple[int, dict]) -> None:
        status, body = result
        text = json.dumps(body, indent=2)  # ASCII (ensure_ascii): characters == bytes
        if status == 200:
            output.AnswerBuffer(text, "application/json")
        else:  # orthanc-python 4.0 takes a str here, not bytes
            output.SendHttpStatus(status, text, len(text))

    def handler(method: str, action: Callable[..., tuple[int, dict]]):
        def callback(output, uri, **request):
            if request["method"] != method:
                output.SendMethodNotAllowed(method)
                return
            try:
                result = action(*request.get("groups", ()), body=request.get("body") or b"",
                                user=_user(request.get("headers", {})))
            except ValueError as error:  # a bad request: say what to fix
                result = (400, {"error": str(error)})
            except Exception as error:  # an error answers 500, never kills Orthanc's thread
                logging.getLogger(__name__).exception("REST %s failed", uri)
                result = (500, {"error": f"{type(error).__name__}: {error}"})
            answer(output, result)
        return callback

    for name, (method, uri) in ROUTES.items():
        orthanc.RegisterRestCallback(uri, handler(method, getattr(routes, name)))


def publish_metrics(values: dict[str, float]) -> None:
    """Set our figures in Orthanc's metrics (GET /tools/metrics-prometheus)."""
    for name, value in values.items():
        orthanc.SetMetricsValue(name, float(value), orthanc.MetricsType.DEFAULT)
