"""Train both models, export them to ``models/`` and write ``training/REPORT.md``.

``python -m training.all [--version 1.0.0] [--gpu]``: segmentation first (the nodule export
restricts candidates to the segmented gland), then the nodule detector, then the held-out report.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from training import evaluate, export, train


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--version", help="version of both files; default: next free one per model")
    ap.add_argument("--configs", type=Path, default=Path("training/configs"))
    ap.add_argument("--gpu", action="store_true", help="use the *-gpu.json configs")
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    suffix = "-gpu" if args.gpu else ""
    for task in ("segmentation", "nodules"):
        t0 = time.time()
        ckpt = train.train(json.loads((args.configs / f"{task}{suffix}.json").read_text()))
        print(f"{task}: trained in {time.time() - t0:.0f}s (including phantom generation)", flush=True)
        extra = ["--version", args.version] if args.version else []
        export.main(["--task", task, "--checkpoint", str(ckpt), "--models-dir", str(args.models_dir), *extra])
    evaluate.main(["--models-dir", str(args.models_dir)])


if __name__ == "__main__":
    main()
