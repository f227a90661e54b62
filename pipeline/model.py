"""The example model: a small CNN for 8x8 digit images, and its checkpoint format.

``models/model.pt`` is a ``torch.save`` of ``{"format": 1, "config": {...}, "state_dict": ...}``;
``config`` holds what :class:`DigitsCNN` needs to be rebuilt, so later stages do not depend on
``params.yaml`` to read the model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelops.errors import InputError
from modelops.fsutil import atomic_write_bytes

CHECKPOINT_FORMAT = 1


class DigitsCNN(nn.Module):
    """conv(1->c) -> conv(c->2c) -> maxpool -> dropout -> linear(32c*... -> 64) -> linear(10)."""

    def __init__(self, channels: int = 16, dropout: float = 0.1, n_classes: int = 10):
        super().__init__()
        self.config = {"channels": channels, "dropout": dropout, "n_classes": n_classes}
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def save_checkpoint(model: DigitsCNN, path: Path) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(model.config),
               "state_dict": model.state_dict()}
    # Serialise in memory: torch names the archive after the file, so saving to a temporary
    # path would make the bytes differ between identical trainings.
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> DigitsCNN:
    """Rebuild the model from ``path`` (weights only, no pickled code), in eval mode."""
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: model checkpoint not found",
                         hint="run `dvc repro train` first") from None
    except Exception as exc:  # torch raises many types for a corrupt file
        raise InputError(f"{path}: not a readable model checkpoint ({exc})".splitlines()[0],
                         hint="run `dvc repro --force train`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: unknown checkpoint format",
                         hint="run `dvc repro --force train`")
    model = DigitsCNN(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def weights_digest(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict, in order: equal iff the weights are equal."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
