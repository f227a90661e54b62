"""Stage ``train``: train the example CNN, deterministically on CPU.

Same params + same data give the same weights, bit for bit, on one machine: seeded torch and
shuffling generator, ``torch.use_deterministic_algorithms(True)`` and a fixed thread count.
Writes ``models/model.pt`` and the training curve ``plots/train_curve.csv``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modelops.fsutil import atomic_write_text
from pipeline._stage import MODEL_PT, TRAIN_CURVE_CSV, progress, stage_main
from pipeline.model import DigitsCNN, save_checkpoint, weights_digest
from pipeline.params import Params, TrainParams
from pipeline.prepare import load_split


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


def make_deterministic(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def train_model(p: TrainParams, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, log: bool = True) -> tuple[DigitsCNN, list[EpochStats]]:
    """Train a fresh :class:`DigitsCNN`; return it (eval mode) and per-epoch statistics."""
    make_deterministic(p.seed, p.threads)
    model = DigitsCNN(channels=p.channels, dropout=p.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    gen = torch.Generator().manual_seed(p.seed)
    curve: list[EpochStats] = []
    for epoch in range(1, p.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), p.batch_size):
            batch = order[start:start + p.batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        val_loss, val_acc = _evaluate(model, xv, yv)
        curve.append(EpochStats(epoch, total / len(xt), val_loss, val_acc))
        if log and (epoch == 1 or epoch == p.epochs or epoch % 5 == 0):
            progress("train", f"epoch {epoch}/{p.epochs}: train_loss={total / len(xt):.4f} "
                              f"val_loss={val_loss:.4f} val_accuracy={val_acc:.4f}")
    model.eval()
    return model, curve


def curve_csv(curve: list[EpochStats]) -> str:
    lines = ["epoch,train_loss,val_loss,val_accuracy"]
    lines += [f"{s.epoch},{s.train_loss:.6f},{s.val_loss:.6f},{s.val_accuracy:.6f}"
              for s in curve]
    return "\n".join(lines) + "\n"


def run(params: Params) -> None:
    p: TrainParams = params.train
    x_train, y_train = load_split("train")
    x_val, y_val = load_split("val")
    progress("train", f"{len(y_train)} training rows, {len(y_val)} validation rows, "
                      f"{p.epochs} epochs, seed {p.seed}")
    model, curve = train_model(p, x_train, y_train, x_val, y_val)
    save_checkpoint(model, MODEL_PT)
    atomic_write_text(TRAIN_CURVE_CSV, curve_csv(curve))
    progress("train", f"wrote {MODEL_PT} (weights sha256 {weights_digest(model)[:12]}) and "
                      f"{TRAIN_CURVE_CSV}")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("train", "Train the example CNN deterministically on CPU; write "
                      "models/model.pt and plots/train_curve.csv.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
