"""Train both models, export them to ``models/`` and write ``training/REPORT.md``.

``python -m training.all --version 1.1.0`` reproduces the shipped 1.1.0 files: per task the base run
(``configs/<task>.json``, the 1.0.0 training), then the fine-tuning run (``configs/<task>-finetune.json``:
initialised from the base checkpoint, trained on the robustness mix of I-123 views, forced skin
markers, stronger salivary uptake and 256x256 frames, input normalised by the 99th percentile),
exported; then the I-123 rule threshold is chosen on I-123 validation phantoms and written to
``rules/default.json`` (:mod:`training.i123_threshold`), then the held-out report.
The nodule thresholds are chosen on 1000 validation phantoms (seeds 5100000-5100999; 300 gave
only 17 nodules of 8-10 mm, too few to rank thresholds).
``python -m training.all --version 1.0.0 --no-finetune --n-val 300`` reproduces the 1.0.0 files (base runs only;
the I-123 threshold step is skipped then). Segmentation first (the nodule export restricts
candidates to the segmented gland), then the nodule detector.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from training import evaluate, export, i123_threshold, train


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--version", help="version of both files; default: next free one per model")
    ap.add_argument("--configs", type=Path, default=Path("training/configs"))
    ap.add_argument("--gpu", action="store_true", help="use the *-gpu.json configs")
    ap.add_argument("--no-finetune", action="store_true", help="export the base runs (the 1.0.0 recipe)")
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--rules", type=Path, default=Path("rules/default.json"))
    ap.add_argument("--n-val", type=int, default=1000,
                    help="validation phantoms for the nodule thresholds (1.1.0: 1000; 1.0.0 used 300)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    suffix = "-gpu" if args.gpu else ""
    finetuned = False
    for task in ("segmentation", "nodules"):
        t0 = time.time()
        base = json.loads((args.configs / f"{task}{suffix}.json").read_text())
        ckpt = train.train(base)
        print(f"{task}: trained in {time.time() - t0:.0f}s (including phantom generation)", flush=True)
        ft_path = args.configs / f"{task}-finetune{suffix}.json"
        if not args.no_finetune and ft_path.exists():
            t0 = time.time()
            ckpt = train.train(json.loads(ft_path.read_text()) | {"init": str(ckpt)})
            finetuned = True
            print(f"{task}: fine-tuned in {time.time() - t0:.0f}s (including phantom generation)", flush=True)
        extra = ["--version", args.version] if args.version else []
        export.main(["--task", task, "--checkpoint", str(ckpt), "--models-dir", str(args.models_dir),
                     "--n-val", str(args.n_val), *extra])
    if finetuned:
        i123_threshold.main(["--models-dir", str(args.models_dir), "--rules", str(args.rules), "--write"])
    evaluate.main(["--models-dir", str(args.models_dir)])


if __name__ == "__main__":
    main()
