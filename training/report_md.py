"""Markdown text of ``training/REPORT.md`` from the results of :mod:`training.evaluate`."""
from __future__ import annotations

from training.data import EVAL_SEED0
from training.metrics import BAND_NAMES
from training.robustness import BARS, SUBSETS

NOTES = """## How to read these figures

- Synthetic data only (`training/phantoms.py`, anterior view, no patient data): the figures say the
  networks learned the phantoms, not that they work on real scintigrams.
- Each network gets the frame resampled to 128x128 and normalised as its file declares (the
  `normalisation` key: divide by that percentile of the frame, clip), exactly as the plugin does.
- Segmentation: argmax of the logits resampled to the frame with nearest, Dice against the true gland
  (lobes + isthmus + pyramidal lobe, isthmus split at the midline). The truth of a thyroiditis or
  toxic-adenoma case is the whole gland, however faint.
- Right/left count share: counts under the image-left lobe over counts under both lobes, measured on
  the same frame once with the predicted and once with the true lobes; the error is the absolute
  difference in percentage points (the image-right share has the same error). An image where either
  share is undefined (no gland predicted) counts as 100 pp.
- Nodules: candidates are 8-connected components of sigmoid > probability inside the predicted gland
  dilated by 2 px, both on the 128x128 input grid (as in `orthanc_plugin/pipelines/thyroid.py`); a
  candidate hits a true cold nodule when its centroid is within the nodule radius + 2 frame pixels.
  Candidates lying on a hot nodule count as false positives and are listed separately.
- Confidence of a candidate = its peak probability, as the plugin reports it. The reliability
  diagram bins the candidates found at the shipped threshold by confidence (10 equal bins) and plots
  the fraction that hit a true cold nodule; ECE = sum over bins of (n_bin / N) |fraction hit - mean
  confidence|.
- The model's nodule thresholds were chosen on validation phantoms (default mix, seeds 5100000-5100999
  for the 1.1.0 files, 5100000-5100299 for 1.0.0): the highest sensitivity over all cold nodules with
  at most 0.5 false positives per image. The I-123 rule threshold: see its section above.
- Cold-nodule contrast is drawn from the measured pinhole ranges and applied before the 4-8 mm
  system blur, so nodules under 8 mm are faint; the domain notes say those are usually missed.
- Toxic adenoma: the rest of the gland is suppressed to 0-20 % of the hot nodule.
- Small subsets give coarse figures: with n nodules in a band one miss moves the sensitivity by 1/n.
"""


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _bars(seg: dict, nod: dict, timing: dict, robust: list[dict]) -> list[str]:
    share = seg["share_error_pp"]["median"]
    measured = {"dice": seg["dice_mean"], "dice_thyroiditis": seg["dice_per_pattern"].get("thyroiditis"),
                "sens_ge10": nod["sensitivity_ge10mm"], "sens_8_10": nod["sensitivity_by_size"]["8-10mm"],
                "fp_per_image": nod["fp_per_image"], "share_median": share, "hot_as_cold": nod["hot_detected_as_cold"]}
    lines = ["## Bars at a glance (main held-out set)", "", "| bar | measured | met |", "|---|---|---|"]
    for key, op, bound, label in BARS:
        v = measured[key]
        ok = v is not None and (v >= bound if op == ">=" else v <= bound)
        shown = f"{v} of {nod['hot_nodules']}" if key == "hot_as_cold" else _f(v)
        lines.append(f"| {label} | {shown} | {'yes' if ok else '**NO**'} |")
    slowest = max(t["1_thread_ms"] for t in timing.values())
    lines.append(f"| CPU inference well under 100 ms (taken as < 50 ms; 128x128, 1 thread, slowest model) "
                 f"| {slowest:.1f} ms | "
                 f"{'yes' if slowest < 50 else '**NO**'} |")
    missing = [f"`{r['subset']}` ({', '.join(r['misses'])})" for r in robust if r["misses"]]
    lines += ["", "Robustness subsets that miss a bar: " + ("; ".join(missing) if missing else "none") + ".", ""]
    return lines


def _segmentation(seg: dict) -> list[str]:
    lines = ["## Thyroid segmentation (Dice at frame resolution) and right/left count-share error", "",
             "| subset | n | Dice | share error median (pp) | share error p90 (pp) |", "|---|---|---|---|---|"]
    s = seg["share_error_pp"]
    lines.append(f"| all | {seg['n_images']} | {seg['dice_mean']:.3f} | {s['median']:.2f} | {s['p90']:.2f} |")
    for p, d in seg["dice_per_pattern"].items():
        s = seg["share_error_pp_per_pattern"][p]
        lines.append(f"| {p} | {seg['n_per_pattern'][p]} | {d:.3f} | {s['median']:.2f} | {s['p90']:.2f} |")
    lines += [f"| lobe image-left | {seg['n_images']} | {seg['dice_lobe_image_left']:.3f} | | |",
              f"| lobe image-right | {seg['n_images']} | {seg['dice_lobe_image_right']:.3f} | | |", ""]
    if seg["share_error_pp"]["n_undefined"]:
        lines += [f"{seg['share_error_pp']['n_undefined']} image(s) without a predicted lobe count as 100 pp.", ""]
    return lines


def _nodules(nod: dict, froc: list[dict], figs: dict) -> list[str]:
    lines = [(f"## Cold-nodule detection (probability > {nod['probability']}, "
             f"min area {nod['min_area_px']} px of the 128x128 grid)"), "",
             "Hit: detection centroid within the true radius + 2 frame px; each nodule counted once.", "",
             "| size band | n | sensitivity |", "|---|---|---|"]
    for b in BAND_NAMES:
        lines.append(f"| {b} | {nod['n_cold_by_size'][b]} | {_f(nod['sensitivity_by_size'][b])} |")
    lines += [f"| >=10 mm | {nod['n_cold_ge10mm']} | {nod['sensitivity_ge10mm']:.3f} |",
              f"| all | {sum(nod['n_cold_by_size'].values())} | {nod['sensitivity_all']:.3f} |", "",
              (f"False positives per image: {nod['fp_per_image']:.3f}; hot nodules detected as cold: "
              f"{nod['hot_detected_as_cold']} of {nod['hot_nodules']}."), "",
              "FROC (probability swept, min area as shipped; the plugin's post-processing at each threshold):", "",
              f"![FROC curve]({figs['froc']})", "",
              "| probability | sensitivity >=10 mm | 8-10 mm | all | FP/image |", "|---|---|---|---|---|"]
    lines += [f"| {f['probability']} | {f['sensitivity_ge10mm']:.3f} | {_f(f['sensitivity_by_size']['8-10mm'])} "
              f"| {f['sensitivity_all']:.3f} | {f['fp_per_image']:.3f} |" for f in froc]
    return lines + [""]


def _calibration(cal: dict, fig: str) -> list[str]:
    lines = ["## Calibration of the detector confidence", "",
             (f"{cal['n']} candidates at the shipped threshold on the held-out set; expected calibration error "
             f"(10 bins) **{cal['ece']:.3f}**. Confidence is the candidate's peak probability."), "",
             f"![Reliability diagram]({fig})", "",
             "| confidence bin | n | mean confidence | fraction that hit |", "|---|---|---|---|"]
    lines += [f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {b['confidence']:.3f} | {b['fraction_hit']:.3f} |"
              for b in cal["bins"]]
    return lines + [""]


def _robustness(robust: list[dict], n: int) -> list[str]:
    lines = ["## Robustness subsets", "",
             (f"{n} phantoms per subset, each from its own seed range (listed), never used for training, "
             "validation, thresholds or the main held-out set; default pattern mix and 128x128 unless the "
             "subset fixes them. Same models and thresholds as above."), ""]
    lines += [f"- `{name}`: {desc}" for name, (desc, _) in SUBSETS.items()]
    lines += ["", ("| subset | seeds | n | Dice | thyroiditis Dice (n) | share error median / p90 (pp) | "
              ">=10 mm sens. (n) | 8-10 mm sens. (n) | FP/image | hot as cold | bars missed |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in robust:
        thy = f"{_f(r['dice_thyroiditis'])} ({r['n_thyroiditis']})"
        lines.append(f"| {r['subset']} | {r['seeds']} | {r['n']} | {r['dice']:.3f} | {thy} | "
                     f"{r['share_median']:.2f} / {r['share_p90']:.2f} | {_f(r['sens_ge10'])} ({r['n_ge10']}) | "
                     f"{_f(r['sens_8_10'])} ({r['n_8_10']}) | {r['fp_per_image']:.3f} | "
                     f"{r['hot_as_cold']} of {r['hot']} | {', '.join(r['misses']) or 'none'} |")
    lines += ["", "In plain words (n: nodules in the band; one miss moves a small band a lot):", ""]
    for r in robust:
        said = []
        for key, _, _, label in BARS:
            if label not in r["misses"]:
                continue
            if key in ("sens_ge10", "sens_8_10"):
                n = r["n_ge10" if key == "sens_ge10" else "n_8_10"]
                where = f", in {r['img_miss_ge10']} image(s)" if key == "sens_ge10" else ""
                said.append(f"{label.split(' >=')[0]} {r[key]:.3f} ({n - round(r[key] * n)} of {n} missed{where})")
            elif key == "hot_as_cold":
                said.append(f"{r['hot_as_cold']} of {r['hot']} hot nodules reported as cold")
            else:
                said.append(f"{label.split(' <=')[0].split(' >=')[0]} {r[key]:.3f}")
        lines.append(f"- `{r['subset']}`: " + ("**misses the bar**: " + "; ".join(said) if said else "meets the bars")
                     + ".")
    return lines + [""]


def _timing(timing: dict, cpu: str) -> list[str]:
    lines = ["## CPU inference time (onnxruntime, one 1x1x128x128 input, median of 50 runs)", "",
             f"Machine: {cpu}. Default threads = onnxruntime's choice (`intra_op_num_threads=0`).", "",
             "| model | 1 thread (ms) | default threads (ms) |", "|---|---|---|"]
    lines += [f"| `{name}` | {t['1_thread_ms']:.1f} | {t['default_threads_ms']:.1f} |" for name, t in timing.items()]
    return lines + [""]


def _i123(sel: dict | None, robust: list[dict]) -> list[str]:
    if not sel:
        return []
    lines = ["## I-123 rule threshold (`rules/default.json`, rule `thyroid-i123`)", "",
             (f"Chosen by `python -m training.i123_threshold --write` on {sel['n']} "
              f"I-123 validation phantoms (seeds {sel['seeds']}, default pattern mix, 128x128; disjoint from the "
              "held-out `i123` subset): the probability with the fewest false positives per image that keeps "
              f">=10 mm sensitivity >= {sel['min_sens']} (model default {sel['model_thresholds']['probability']}, "
              f"min area {sel['model_thresholds']['min_area_px']} px). Chosen: **{sel['chosen']}**."), "",
             "| probability | >=10 mm sens. (n) | all cold sens. | FP/image | hot as cold |", "|---|---|---|---|---|"]
    lines += [f"| {r['probability']} | {r['sensitivity_ge10mm']:.3f} ({r['n_cold_ge10mm']}) | {r['sensitivity_all']:.3f} "
              f"| {r['fp_per_image']:.3f} | {r['hot_detected_as_cold']} |" for r in sel["sweep"]]
    return lines + ["", "Its held-out result is the `i123 @ rule threshold` row of the robustness table (the plain "
                    "`i123` row uses the model's default threshold).", ""]


def _previous(prev: dict | None, res: dict) -> list[str]:
    if not prev:
        return []
    lines = [f"## Compared with `{prev['names'][0]}` / `{prev['names'][1]}` (same held-out seeds)", "",
             "| figure | previous | now |", "|---|---|---|"]
    for label, get in (("Dice", lambda r: r["segmentation"]["dice_mean"]),
                       ("thyroiditis Dice", lambda r: r["segmentation"]["dice_per_pattern"]["thyroiditis"]),
                       (">=10 mm sensitivity", lambda r: r["nodules"]["sensitivity_ge10mm"]),
                       ("8-10 mm sensitivity", lambda r: r["nodules"]["sensitivity_by_size"]["8-10mm"]),
                       ("FP/image", lambda r: r["nodules"]["fp_per_image"]),
                       ("share error median (pp)", lambda r: r["segmentation"]["share_error_pp"]["median"])):
        lines.append(f"| {label} | {get(prev):.3f} | {get(res):.3f} |")
    old = {r["subset"].split(" @ ")[0] + (" @ rule" if " @ " in r["subset"] else ""): r for r in prev["robustness"]}
    lines += ["", "| robustness subset | >=10 mm sens. previous / now | 8-10 mm previous / now | FP/image previous / now "
              "| bars missed now |", "|---|---|---|---|---|"]
    for r in res["robustness"]:
        o = old.get(r["subset"].split(" @ ")[0] + (" @ rule" if " @ " in r["subset"] else ""))
        if o:
            lines.append(f"| {r['subset']} (was {o['subset']}) | {_f(o['sens_ge10'])} / {_f(r['sens_ge10'])} | "
                         f"{_f(o['sens_8_10'])} / {_f(r['sens_8_10'])} | {o['fp_per_image']:.3f} / {r['fp_per_image']:.3f} "
                         f"| {', '.join(r['misses']) or 'none'} |")
    return lines + [""]


def report_markdown(res: dict) -> str:
    """``training/REPORT.md`` text from the ``results`` dict built by :func:`training.evaluate.main`."""
    names, seg, nod, figs = res["names"], res["segmentation"], res["nodules"], res["figures"]
    version = names[0].rsplit("-", 1)[-1].removesuffix(".onnx")
    lines = [f"# Held-out evaluation of `{names[0]}` and `{names[1]}`", "",
             (f"Reproduce these files and this report: `python -m training.all --version {version}` "
              "(see `training/all.py`; `python -m training.evaluate` alone re-evaluates the highest-version files)."), "",
             f"- `{names[0]}`: {res['trained'][0]}", f"- `{names[1]}`: {res['trained'][1]}", "",
             (f"{seg['n_images']} synthetic phantoms, seeds {EVAL_SEED0}-{EVAL_SEED0 + seg['n_images'] - 1} "
             "(never used for training, validation or thresholds), default pattern mix, every tenth "
             f"at 256x256. Written by `python -m training.evaluate` in {res['elapsed_s']:.0f} s."), ""]
    lines += _bars(seg, nod, res["timing"], res["robustness"])
    lines += _segmentation(seg) + _nodules(nod, res["froc"], figs) + _calibration(res["calibration"], figs["calibration"])
    lines += _robustness(res["robustness"], res["n_robust"]) + _i123(res.get("i123_threshold"), res["robustness"])
    lines += _previous(res.get("previous"), res) + _timing(res["timing"], res["cpu"])
    lines += ["## Failure gallery", "",
              ("The held-out images with the lowest gland Dice, then those missing a cold nodule of 10 mm or "
              "more, then those with the most confident false positive (each image once). Outlines: green "
              "true gland, red predicted gland, cyan true cold nodule, yellow candidate at the shipped threshold."), "",
              f"![Failure gallery]({figs['failures']})", "",
              "## Phantom gallery", "",
              ("Sixteen phantoms across the patterns, 128x128 and 256x256, with and without nodules, plus the "
              f"I-123, marker and salivary variants (seeds from {res['gallery_seed0']}), shown without overlays: "
              "grey scale from 0 to the 99.5th percentile of each image."), "",
              f"![Phantom gallery]({figs['phantoms']})", ""]
    return "\n".join(lines + [NOTES])
