"""Orthanc's PythonScript: puts our packages on the path, builds the parts, registers callbacks.

It decides nothing: configuration goes to config.py, work to worker.py, routes to rest.py.
"""

import glob
import logging
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The venv made by scripts/setup.sh (or AI_NODE_SITE_PACKAGES, colon-separated, e.g. in Docker).
_SITE = os.environ.get("AI_NODE_SITE_PACKAGES") or os.pathsep.join(
    glob.glob(os.path.join(_ROOT, ".venv", "lib", "python3*", "site-packages")))
for _path in [_ROOT, *filter(None, _SITE.split(os.pathsep))]:
    if _path not in sys.path:
        sys.path.insert(1, _path)

import orthanc  # noqa: E402  (only available inside Orthanc)

from orthanc_plugin import adapter  # noqa: E402
from orthanc_plugin.config import SECTION, parse_config  # noqa: E402
from orthanc_plugin.models import ModelRegistry  # noqa: E402
from orthanc_plugin.pipelines import PIPELINES  # noqa: E402
from orthanc_plugin.rest import Routes  # noqa: E402
from orthanc_plugin.rules import RulesHolder  # noqa: E402
from orthanc_plugin.worker import Worker  # noqa: E402

adapter.install_logging()
_log = logging.getLogger("orthanc_plugin.entry")


def _build() -> Worker | None:
    config = parse_config(adapter.read_section(SECTION))
    if not config.enabled:
        _log.warning("%s.Enabled is false: the AI node stays idle", SECTION)
        return None
    registry = ModelRegistry(config.models_directory, config.providers, shadow_files=config.shadow_models)
    rules_holder = RulesHolder(config.rules_file, known_pipelines=PIPELINES)
    return Worker(adapter.OrthancRestApi(), config, registry, rules_holder,
                  publish_metrics=adapter.publish_metrics)


try:
    _worker = _build()
except Exception:  # a bad configuration turns the node off; Orthanc keeps storing images
    _log.exception("AI node disabled: cannot start")
    _worker = None

if _worker is not None:
    adapter.register_routes(Routes(_worker))
    try:  # the AI panel on Orthanc Explorer's study page; without it the node still works
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer.js"), encoding="utf-8") as _js:
            orthanc.ExtendOrthancExplorer(_js.read())
    except Exception:
        _log.exception("Orthanc Explorer AI panel not installed")


def on_change(change_type, level, resource_id):
    """Orthanc's change callback: only wakes (or starts/stops) the worker."""
    try:
        if _worker is None:
            return
        if change_type == orthanc.ChangeType.ORTHANC_STARTED:
            _worker.start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            _worker.stop()
        elif change_type == orthanc.ChangeType.STABLE_STUDY:
            _worker.mark_stable(resource_id)
        elif change_type == orthanc.ChangeType.NEW_STUDY:
            _worker.wake()
    except Exception:
        _log.exception("change callback failed")


orthanc.RegisterOnChangeCallback(on_change)
