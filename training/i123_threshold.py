"""Choose the I-123 rule's nodule threshold on I-123 validation phantoms: ``python -m training.i123_threshold``.

The phantoms are ``generate(seed, isotope="i123")`` (default pattern mix, 128x128), seeds from
:data:`I123_VAL_SEED0` (5200000-, disjoint from training, the default-mix validation seeds and
every held-out seed range, including the held-out ``i123`` robustness subset 11300000-).
Among the swept probabilities (at the model's ``min_area_px``), the one keeping the >=10 mm
sensitivity at or above ``--min-sens`` with the fewest false positives per image wins (ties: the
higher sensitivity over all cold nodules, then the higher probability). ``--write`` puts it into
the ``i123`` rule of ``rules/default.json``; the sweep goes to ``training/report/i123_threshold.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from training import evaluate as ev
from training.data import VAL_SEED0
from training.phantoms import generate

log = logging.getLogger(__name__)
I123_VAL_SEED0 = VAL_SEED0 + 200_000
PROBABILITIES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sweep(models_dir: Path, n: int) -> tuple[dict, list[dict]]:
    """Nodule metrics of the highest-version files on the I-123 validation phantoms per probability."""
    from training.export import latest_model  # export imports evaluate
    seg = ev.session(latest_model(models_dir, "thyroid-segmentation"))
    nod = ev.session(latest_model(models_dir, "cold-nodule-detection"))
    thr = json.loads(nod.get_modelmeta().custom_metadata_map["thresholds"])
    phs = [generate(s, isotope="i123") for s in range(I123_VAL_SEED0, I123_VAL_SEED0 + n)]
    cache = ev.nodule_cache(seg, nod, phs, ev.predict(seg, nod, phs))
    probs = sorted(set(PROBABILITIES) | {float(thr["probability"])})
    return thr, [ev.nodule_metrics(cache, p, thr["min_area_px"]) for p in probs]


def choose(rows: list[dict], min_sens: float = 0.95) -> dict:
    """Fewest FP/image among rows with >=10 mm sensitivity >= ``min_sens`` (else the most sensitive)."""
    ok = [r for r in rows if r["sensitivity_ge10mm"] >= min_sens]
    if not ok:
        log.warning("no threshold keeps >=10 mm sensitivity >= %.2f on the I-123 validation set", min_sens)
        return max(rows, key=lambda r: (r["sensitivity_ge10mm"], -r["fp_per_image"]))
    return min(ok, key=lambda r: (r["fp_per_image"], -r["sensitivity_all"], -r["probability"]))


def write_rule(rules_path: Path, probability: float, n: int, sens: float, fp: float) -> None:
    """Set ``options.nodule_probability`` and the description of the ``i123`` rule."""
    doc = json.loads(rules_path.read_text())
    for rule in doc["rules"]:
        if rule.get("variant") == "i123":
            rule["options"] = {"nodule_probability": probability}
            rule["description"] = (
                "Static planar NM thyroid image, I-123 (radionuclide code SRT C-114A4 or SNOMED CT 21572004). "
                f"Lower counts and more scatter than Tc-99m: the nodule detector runs at probability {probability}, "
                f"chosen on {n} synthetic I-123 validation phantoms (seeds {I123_VAL_SEED0}-{I123_VAL_SEED0 + n - 1}, "
                f"python -m training.i123_threshold) as the fewest false positives ({fp:.2f}/image) keeping "
                f">=10 mm sensitivity >= 0.95 ({sens:.3f}).")
    rules_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--n", type=int, default=300, help="I-123 validation phantoms")
    ap.add_argument("--min-sens", type=float, default=0.95)
    ap.add_argument("--rules", type=Path, default=Path("rules/default.json"))
    ap.add_argument("--write", action="store_true", help="write the choice into --rules")
    ap.add_argument("--out", type=Path, default=Path("training/report/i123_threshold.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    thr, rows = sweep(args.models_dir, args.n)
    best = choose(rows, args.min_sens)
    for r in rows:
        print(f"p {r['probability']:<5} >=10mm {r['sensitivity_ge10mm']:.3f} ({r['n_cold_ge10mm']}) "
              f"8-10mm {r['sensitivity_by_size']['8-10mm']} all {r['sensitivity_all']:.3f} "
              f"FP/image {r['fp_per_image']:.3f} hot-as-cold {r['hot_detected_as_cold']}")
    print(f"chosen: {best['probability']} (model default {thr['probability']})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "seeds": f"{I123_VAL_SEED0}-{I123_VAL_SEED0 + args.n - 1}", "min_sens": args.min_sens,
                                    "chosen": best["probability"], "model_thresholds": thr,
                                    "sweep": [{k: r[k] for k in ("probability", "sensitivity_ge10mm", "n_cold_ge10mm",
                                                                 "sensitivity_all", "fp_per_image",
                                                                 "hot_detected_as_cold")} for r in rows]},
                                   indent=1, default=float))
    if args.write:
        write_rule(args.rules, best["probability"], args.n, best["sensitivity_ge10mm"], best["fp_per_image"])
        print(f"wrote {args.rules}", flush=True)


if __name__ == "__main__":
    main()
