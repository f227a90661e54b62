"""Stage ``export``: write ``models/model.onnx`` (input ``input`` float32 [batch, 1, 8, 8],
output ``logits`` float32 [batch, 10], dynamic batch axis) and check it against PyTorch.

ONNX Runtime and PyTorch run the whole test split; the export fails (exit 1) when the largest
absolute logit difference exceeds ``export.max_abs_diff`` or top-1 agreement falls below
``export.min_top1_agreement``. On failure no ``model.onnx`` is left behind.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from modelops.errors import GateFailed, InputError
from modelops.fsutil import atomic_path, write_json
from pipeline._stage import IMAGE_SHAPE, MODEL_ONNX, MODEL_PT, PARITY_JSON, progress, stage_main
from pipeline.model import load_checkpoint
from pipeline.params import ExportParams, Params
from pipeline.prepare import load_split

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Parity:
    n: int
    max_abs_diff: float
    top1_agreement: float

    def problems(self, p: ExportParams) -> list[str]:
        out = []
        if not self.max_abs_diff <= p.max_abs_diff:  # also catches NaN
            out.append(f"max abs logit difference {self.max_abs_diff:.3g} exceeds "
                       f"export.max_abs_diff {p.max_abs_diff:g}")
        if self.top1_agreement < p.min_top1_agreement:
            out.append(f"top-1 agreement {self.top1_agreement:.4f} is below "
                       f"export.min_top1_agreement {p.min_top1_agreement:g}")
        return out


def export_onnx(model: torch.nn.Module, path: Path, opset: int) -> None:
    """Export with the TorchScript-based exporter (``dynamo=False``) and a dynamic batch axis."""
    dummy = torch.zeros(1, *IMAGE_SHAPE, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def onnx_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"{path}: onnx runtime cannot load the model ({exc})".splitlines()[0],
                         hint="run `dvc repro --force export`") from None


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the ONNX model at ``path`` for ``x`` (ONNX Runtime, CPU)."""
    return onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def compare(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    if reference.shape != candidate.shape:
        return Parity(len(reference), float("inf"), 0.0)
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate))) if reference.size \
        else 0.0
    agree = float(np.mean(reference.argmax(1) == candidate.argmax(1))) if len(reference) else 1.0
    return Parity(len(reference), diff, agree)


def run(params: Params) -> None:
    p: ExportParams = params.export
    model = load_checkpoint(MODEL_PT)
    x_test, _ = load_split("test")
    with atomic_path(MODEL_ONNX) as tmp:  # renamed over model.onnx only if parity holds
        export_onnx(model, tmp, p.opset)
        progress("export", f"exported ONNX opset {p.opset}; checking parity on "
                           f"{len(x_test)} test rows")
        parity = compare(torch_logits(model, x_test), ort_logits(tmp, x_test))
        problems = parity.problems(p)
        if problems:
            raise GateFailed(
                "onnx runtime disagrees with pytorch: " + "; ".join(problems),
                hint="no models/model.onnx was written; check the model for ops the exporter "
                     "handles differently, or loosen the tolerances in params.yaml (export)")
    write_json(PARITY_JSON, asdict(parity))
    progress("export", f"wrote {MODEL_ONNX}: max_abs_diff={parity.max_abs_diff:.3g}, "
                       f"top1_agreement={parity.top1_agreement:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("export", "Export models/model.pt to models/model.onnx (dynamic batch) "
                      "and check ONNX Runtime against PyTorch on the test split.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
