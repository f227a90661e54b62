"""Tiny ONNX models and prepared splits built with onnx.helper, for the compile tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_model(path: Path, *, seed: int = 0, batch: str | int = "batch",
                 op: str | None = None) -> Path:
    """input [batch,1,8,8] -> Flatten -> Gemm(64x10) -> logits [batch,10].

    ``op`` inserts a node of that (unknown, custom-domain) type before the output, for the
    "unsupported op" path.
    """
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(10,)).astype(np.float32), "b")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat", "w", "b"],
                              ["gemm_out" if op else "logits"], name="fc")]
    opsets = [helper.make_opsetid("", 17)]
    if op:
        nodes.append(helper.make_node(op, ["gemm_out"], ["logits"], name="custom_1",
                                      domain="com.example"))
        opsets.append(helper.make_opsetid("com.example", 1))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        initializer=[w, b])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def splits(data_dir: Path, model: Path, n_test: int = 64, n_train: int = 128,
           seed: int = 1) -> Path:
    """test.npz/train.npz with labels = the model's own argmax (reference accuracy 1.0)."""
    import onnxruntime as ort

    data_dir.mkdir(parents=True, exist_ok=True)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    for name, n in (("test", n_test), ("train", n_train)):
        x = rng.random((n, 1, 8, 8), dtype=np.float32)
        y = sess.run(["logits"], {"input": x})[0].argmax(axis=1).astype(np.int64)
        np.savez(data_dir / f"{name}.npz", x=x, y=y)
    return data_dir


PARAMS = """\
modelops:
  model:
    name: digits-cnn
    artifact: {{path: models/model.onnx}}
    test_data: data/prepared/test.npz
    calibration_data: data/prepared/train.npz
  compile:
    backend: {backend}
    precision: {precision}
    batch_profile: {{min: 1, opt: 8, max: 32}}
    batch_sizes: [1, 8, 32]
    warmup: 2
    runs: 5
    calibration: {{samples: 64, batch_size: 16, seed: 0}}
    tolerances:
      fp32: {{atol: {atol}, rtol: 0.001, min_top1_agreement: 1.0, max_accuracy_drop: 0.0}}
      fp16: {{atol: 0.02, rtol: 0.01, min_top1_agreement: 0.99, max_accuracy_drop: 0.01}}
      int8: {{atol: {int8_atol}, rtol: {int8_rtol}, min_top1_agreement: {int8_top1}, \
max_accuracy_drop: 1.0}}
"""


def write_params(path: Path, *, backend: str = "auto", precision: str = "fp32",
                 atol: float = 1e-4, int8_atol: float = 10.0, int8_rtol: float = 1.0,
                 int8_top1: float = 0.0) -> Path:
    path.write_text(PARAMS.format(backend=backend, precision=precision, atol=atol,
                                  int8_atol=int8_atol, int8_rtol=int8_rtol,
                                  int8_top1=int8_top1))
    return path
