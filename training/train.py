"""Train a U-Net on synthetic phantoms: ``python -m training.train --task segmentation --config ...``.

Fixed seeds and a fixed number of optimiser ``steps`` with a cosine learning-rate schedule (so a
run is reproducible); ``max_minutes`` is only a safety stop, logged as a warning. Validation after
each epoch on phantoms from :data:`training.data.VAL_SEED0`; the best state is saved to
``<out>/best.pt`` (``training/runs/`` is git-ignored). A text progress bar (epoch, steps, running
loss, elapsed time and ETA) goes to stderr: redrawn in place on a terminal, a line per tenth of the
run otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import torch.nn.functional as F

from training.data import augment, cached_arrays
from training.models import build_model

log = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``; ``--:--`` when unknown."""
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_progress(epoch: int, n_epochs: int, step: int, steps_total: int, loss: float, elapsed_s: float,
                    width: int = 20) -> str:
    """One progress line: ``epoch 2/5 [########............] step 360/900 loss 0.4321 elapsed 1:05 ETA 1:38``.

    Parameters
    ----------
    epoch, n_epochs : int
        Current epoch (1-based) and the number the step budget needs.
    step, steps_total : int
        Optimiser steps done and planned; the bar shows their ratio.
    loss : float
        Running training loss of the epoch.
    elapsed_s : float
        Seconds since training started; the ETA assumes the same time per remaining step.
    width : int
        Characters inside the brackets.
    """
    frac = min(step / steps_total, 1.0) if steps_total > 0 else 1.0
    filled = int(frac * width + 1e-9)
    eta = elapsed_s / step * max(steps_total - step, 0) if step else float("nan")
    return (f"epoch {epoch}/{n_epochs} [{'#' * filled}{'.' * (width - filled)}] step {step}/{steps_total} "
            f"loss {loss:.4f} elapsed {_clock(elapsed_s)} ETA {_clock(eta)}")


class Progress:
    """Progress bar on ``stream`` (stderr): redrawn in place on a terminal, else a line per 10 % of steps."""

    def __init__(self, steps_total: int, n_epochs: int, stream: TextIO | None = None, every_s: float = 0.5) -> None:
        self.steps_total, self.n_epochs, self.stream = steps_total, n_epochs, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s, self.t0, self.last, self.next_tenth, self.open = every_s, time.time(), 0.0, 1, False
        self.width = 0

    def update(self, epoch: int, step: int, loss: float) -> None:
        """Show the state after ``step`` steps (throttled)."""
        now = time.time()
        line = format_progress(epoch, self.n_epochs, step, self.steps_total, loss, now - self.t0)
        if self.tty and (now - self.last >= self.every_s or step == self.steps_total):
            self.stream.write("\r" + line.ljust(self.width))
            self.last, self.open, self.width = now, True, max(self.width, len(line))
        elif not self.tty and step * 10 >= self.next_tenth * self.steps_total:
            self.stream.write(line + "\n")
            self.next_tenth = step * 10 // max(self.steps_total, 1) + 1
        self.stream.flush()

    def end_line(self) -> None:
        """Finish the in-place line before other output."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - Dice`` per channel over the whole batch, averaged over channels."""
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    return 1 - ((2 * inter + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)).mean()


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str, pos_weight: float = 3.0) -> torch.Tensor:
    """Cross-entropy + soft Dice on the lobes (segmentation) or weighted BCE + Dice (nodules)."""
    if task == "segmentation":
        onehot = F.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2).float()
        return F.cross_entropy(logits, y) + soft_dice_loss(logits.softmax(1)[:, 1:], onehot[:, 1:])
    t = y[:, None].float()
    bce = F.binary_cross_entropy_with_logits(logits, t, pos_weight=torch.tensor(pos_weight, device=t.device))
    return bce + soft_dice_loss(torch.sigmoid(logits), t)


@torch.no_grad()
def validate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, task: str, batch: int = 32) -> dict:
    """Mean validation loss and pooled foreground Dice (argmax / probability > 0.5)."""
    model.eval()
    dev = next(model.parameters()).device
    losses, inter, total = [], 0.0, 0.0
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).to(dev).contiguous(memory_format=torch.channels_last)
        yb = torch.from_numpy(y[i:i + batch]).long().to(dev)
        logits = model(xb)
        losses.append(float(loss_fn(logits, yb, task)) * len(xb))
        pred = logits.argmax(1) if task == "segmentation" else (logits[:, 0] > 0).long()
        for k in range(1, int(logits.shape[1]) + (task != "segmentation")):
            inter += float(((pred == k) & (yb == k)).sum())
            total += float((pred == k).sum() + (yb == k).sum())
    model.train()
    return {"loss": sum(losses) / len(x), "dice": 2 * inter / max(total, 1.0)}


def train(config: dict) -> Path:
    """Train the model described by ``config`` and return the path of the best checkpoint."""
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"])
    torch.set_num_threads(int(config.get("threads", 2)))
    task, cache = config["task"], Path(config["cache_dir"])
    mix, norm = config.get("mix"), config.get("normalisation")
    x_tr, y_tr = cached_arrays(range(*config["train_seeds"]), task, cache, mix, norm)
    x_va, y_va = cached_arrays(range(*config["val_seeds"]), task, cache, mix, norm)
    dev = torch.device(config.get("device", "cpu"))
    model = build_model(config)
    if config.get("init"):  # fine-tuning: start from an earlier run's best checkpoint
        model.load_state_dict(torch.load(config["init"], weights_only=False)["state_dict"])
        log.info("initialised from %s", config["init"])
    model = model.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    gen = torch.Generator().manual_seed(config["seed"])
    bs, budget = int(config["batch_size"]), 60.0 * float(config["max_minutes"])
    steps_total = int(config["steps"])
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    best, step, t0 = -1.0, 0, time.time()
    progress = Progress(steps_total, math.ceil(steps_total / max(len(x_tr) // bs, 1)))
    for epoch in range(10**6):
        perm = torch.randperm(len(x_tr), generator=gen)
        run = []
        for i in range(0, len(perm) - bs + 1, bs):
            if step >= steps_total or time.time() - t0 >= budget:
                break
            for g in opt.param_groups:
                g["lr"] = config["lr"] * 0.5 * (1 + math.cos(math.pi * step / steps_total))
            idx = perm[i:i + bs]
            xb, yb = augment(torch.from_numpy(x_tr[idx]), torch.from_numpy(y_tr[idx]).long(), task, gen)
            xb, yb = xb.to(dev).contiguous(memory_format=torch.channels_last), yb.to(dev)
            loss = loss_fn(model(xb), yb, task, float(config.get("pos_weight", 3.0)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(float(loss.detach()))
            step += 1
            progress.update(epoch + 1, step, float(np.mean(run)))
        val = validate(model, x_va, y_va, task)
        progress.end_line()
        print(f"epoch {epoch + 1:3d} step {step:5d} {time.time() - t0:6.0f}s "
              f"train_loss {np.mean(run) if run else float('nan'):.4f} val_loss {val['loss']:.4f} "
              f"val_dice {val['dice']:.4f}", flush=True)
        if val["dice"] > best:
            best = val["dice"]
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            torch.save({"config": config, "state_dict": state, "val": val, "epoch": epoch + 1,
                        "train_seconds": time.time() - t0}, out / "best.pt")
        if step >= steps_total:
            break
        if time.time() - t0 >= budget:
            log.warning("stopped by max_minutes after %d of %d steps: this run is not reproducible", step, steps_total)
            break
    ck = torch.load(out / "best.pt", weights_only=False)
    ck["total_train_seconds"] = time.time() - t0
    torch.save(ck, out / "best.pt")
    print(f"done in {time.time() - t0:.0f}s, best val_dice {best:.4f} -> {out / 'best.pt'}", flush=True)
    return out / "best.pt"


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", choices=["segmentation", "nodules"], required=True)
    ap.add_argument("--config", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(args.config.read_text())
    if config["task"] != args.task:
        ap.error(f"config task {config['task']!r} does not match --task {args.task!r}")
    train(config)


if __name__ == "__main__":
    main()
