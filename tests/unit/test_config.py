"""Our orthanc.json section: defaults, conversions, and errors that name the key."""

import json
from pathlib import Path

import pytest

from orthanc_plugin.config import NodeConfig, parse_config
from orthanc_plugin.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_absent_section_gives_the_defaults():
    assert parse_config(None) == NodeConfig()


def test_shipped_orthanc_json_section_is_valid_and_paths_resolve():
    section = json.loads((ROOT / "orthanc.json").read_text())["AiNode"]
    config = parse_config(section, base_dir=ROOT)
    assert Path(config.models_directory) == ROOT / "models"
    assert Path(config.rules_file).is_file()
    assert config.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("section, message", [
    ({"Unknown": 1}, "unknown key 'Unknown'"),
    ({"MaxAttempts": 0}, "MaxAttempts: expected an integer >= 1"),
    ({"MaxAttempts": "3"}, "MaxAttempts: expected a number"),
    ({"Enabled": 1}, "Enabled: expected true or false"),
    ({"Providers": []}, "Providers: expected a list"),
    ({"CalibrationMmPerPixel": -1}, "CalibrationMmPerPixel: expected a positive number"),
    ({"RulesFile": ""}, "RulesFile: expected a path"),
    ([], "expected a JSON object"),
])
def test_bad_values_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(section)
