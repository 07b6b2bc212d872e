"""Send a few synthetic thyroid studies to a running node and print what it found.

    make run            # in one terminal
    make demo           # in another (same AI_NODE_* variables if you changed ports)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.orthanc_process import http_session  # noqa: E402
from training import phantoms, synthetic_nm  # noqa: E402

CASES = [  # (name, phantom pattern, radionuclide, what to expect)
    ("normal-tc99m", "normal", "tc99m", "a normal gland"),
    ("multinodular-tc99m", "multinodular", "tc99m", "cold-nodule candidates"),
    ("graves-i123", "graves", "i123", "an enlarged intense gland (I-123 variant)"),
]


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=int(env.get("AI_NODE_HTTP_PORT", 8042)))
    parser.add_argument("--dicom-port", type=int, default=int(env.get("AI_NODE_DICOM_PORT", 4242)))
    parser.add_argument("--aet", default=env.get("AI_NODE_AET", "ORTHANC_AI"))
    parser.add_argument("--user", default=env.get("AI_NODE_USER", "orthanc"))
    parser.add_argument("--password", default=env.get("AI_NODE_PASSWORD", "orthanc"))
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.http_port}"
    http = http_session(args.user, args.password)
    try:
        http.get(f"{url}/ai/status", timeout=5).raise_for_status()
    except requests.RequestException as error:
        print(f"no AI node answers at {url} ({error}); start it with `make run`", file=sys.stderr)
        return 1
    stamp = time.strftime("%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        sent = []
        for i, (name, pattern, nuclide, expect) in enumerate(CASES):
            phantom = phantoms.generate(7000 + i, pattern=pattern)
            ds = synthetic_nm.nm_dataset(phantom.image, patient_id=f"DEMO-{name}", patient_name=f"Demo^{name}",
                                         radionuclide=nuclide, pixel_spacing_mm=phantom.stored_pixel_spacing_mm,
                                         study_instance_uid=None, accession_number=f"D{stamp}{i}",
                                         study_id=f"{stamp}{i}")
            path = synthetic_nm.write(ds, Path(tmp) / f"{name}.dcm")
            subprocess.run(["storescu", "-aet", "DEMO", "-aec", args.aet, args.host, str(args.dicom_port),
                            str(path)], check=True)
            sent.append((name, expect, ds.StudyInstanceUID))
            print(f"sent {name} ({expect})")
    for name, expect, uid in sent:
        study_id = next(a["ID"] for a in http.post(f"{url}/tools/lookup", uid).json() if a["Type"] == "Study")
        deadline = time.time() + 120
        while (state := http.get(f"{url}/ai/studies/{study_id}").json())["state"] not in ("done", "failed", "skipped"):
            if time.time() > deadline:
                break
            time.sleep(1)
        print(f"\n{name}: {state['state']} {state.get('error') or ''}")
        for result in state.get("results", []):
            findings = result["findings"]
            flag = "" if findings["calibrated"] else " (uncalibrated: stored pixel spacing)"
            for key, m in findings["measurements"].items():
                print(f"  {key}: {m['value']} {m['unit']}{flag if m['unit'] in ('mm', 'mm2') else ''}")
            for nodule in findings["nodules"]:
                print(f"  nodule {nodule['number']}: {nodule['lobe']} lobe, {nodule['pole']} pole, "
                      f"{nodule['diameter_mm'] or nodule['diameter_px']} {'mm' if nodule['diameter_mm'] else 'px'}, "
                      f"N/P {nodule['nodule_to_parenchyma_ratio']}, confidence {nodule['confidence']}")
            print("  models: " + ", ".join(f"{m['name']} {m['version']}" for m in result["models"]))
            overlay = result["outputs"]["sc"]["instance_id"]
            print(f"  overlay: {url}/app/explorer.html#instance?uuid={overlay}")
        print(f"  study:   {url}/app/explorer.html#study?uuid={study_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
