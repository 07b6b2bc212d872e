"""Write the runtime configuration of a node and start Orthanc in the foreground.

    python scripts/node.py run                       # ports, AE title, data folder from the env
    AI_NODE_HTTP_PORT=8043 AI_NODE_DICOM_PORT=4243 AI_NODE_AET=AI2 AI_NODE_DATA=/tmp/node2 \
        python scripts/node.py run                   # a second node side by side

Only the standard library: it runs before or without the virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORTHANC = "/usr/sbin/Orthanc"


def node_config(*, data_dir: Path, http_port: int, dicom_port: int, aet: str,
                overrides: dict | None = None) -> dict:
    """Return orthanc.json with absolute paths, the given ports/AE title, then ``overrides``."""
    config = json.loads((ROOT / "orthanc.json").read_text())
    storage = data_dir / "storage"
    config.update(HttpPort=http_port, DicomPort=dicom_port, DicomAet=aet,
                  StorageDirectory=str(storage), IndexDirectory=str(storage),
                  PythonScript=str(ROOT / "orthanc_plugin" / "entry.py"))
    section = config["AiNode"]
    for key in ("ModelsDirectory", "RulesFile"):
        if not Path(section[key]).is_absolute():
            section[key] = str(ROOT / section[key])
    for key, value in (overrides or {}).items():
        if key == "AiNode":
            section.update(value)
        else:
            config[key] = value
    return config


def write_config(data_dir: Path, config: dict) -> Path:
    """Write ``config`` as data_dir/orthanc-config.json and return its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "orthanc-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "config"], help="run Orthanc, or only write the config")
    parser.add_argument("--verbose", action="store_true", help="Orthanc --verbose")
    args = parser.parse_args(argv)
    env = os.environ
    data_dir = Path(env.get("AI_NODE_DATA", ROOT / "data")).resolve()
    config = node_config(data_dir=data_dir, http_port=int(env.get("AI_NODE_HTTP_PORT", 8042)),
                         dicom_port=int(env.get("AI_NODE_DICOM_PORT", 4242)),
                         aet=env.get("AI_NODE_AET", "ORTHANC_AI"))
    if "AI_NODE_USER" in env:
        config["RegisteredUsers"] = {env["AI_NODE_USER"]: env.get("AI_NODE_PASSWORD", "")}
    path = write_config(data_dir, config)
    print(f"configuration: {path}")
    print(f"Orthanc Explorer: http://localhost:{config['HttpPort']}/app/explorer.html  "
          f"DICOM: {config['DicomAet']}@localhost:{config['DicomPort']}", flush=True)
    if args.command == "config":
        return 0
    if not shutil.which(ORTHANC):
        print(f"{ORTHANC} not found: run scripts/setup.sh first", file=sys.stderr)
        return 1
    os.execv(ORTHANC, [ORTHANC, *(["--verbose"] if args.verbose else []), str(path)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
