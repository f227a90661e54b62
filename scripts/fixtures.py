"""Small models and held-out data for the canary demo, the benchmark and the tests.

``held_out()`` reads ``data/prepared/test.npz`` when the pipeline has made it, and otherwise the
scikit-learn digits (the same source, scaled the same way). ``linear_model()`` writes a small ONNX
classifier with the pipeline model's interface (input ``input`` float32 [batch,1,8,8], output
``logits`` float32 [batch,10]): a ridge-regression classifier fitted on the digits, or the same
weights shuffled (a degraded model whose predictions drift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def held_out(root: Path | None = None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [N,1,8,8] in [0,1], y int64) from the test split, or sklearn's digits."""
    npz = (root or Path.cwd()) / "data" / "prepared" / "test.npz"
    if npz.is_file():
        with np.load(npz) as data:
            x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        y = d.target.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression onto one-hot labels (closed form: milliseconds, ~95% on digits)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.hstack([d.data / 16.0, np.ones((len(d.data), 1))])
    y = np.eye(10)[d.target]
    coef = np.linalg.solve(x.T @ x + 1.0 * np.eye(x.shape[1]), x.T @ y)  # [65, 10]
    scale = 10.0  # sharper logits: a confident classifier, as a trained CNN is
    return (scale * coef[:-1].T).astype(np.float32), (scale * coef[-1]).astype(np.float32)


def linear_model(path: Path, *, shuffled: bool = False, nan: bool = False,
                 seed: int = 0) -> Path:
    """Write a digits classifier as ONNX; ``shuffled`` permutes its weights (a model whose
    predictions drift), ``nan`` makes every output NaN (a model the server answers 500 for)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = _weights(seed)  # w [10, 64]
    if nan:
        b = np.full_like(b, np.nan)
    if shuffled:
        rng = np.random.default_rng(seed + 1)
        w = rng.permutation(w.ravel()).reshape(w.shape)
        b = b + np.linspace(0.0, 6.0, b.size, dtype=np.float32)  # biased towards high classes
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1)],
        "digits-linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="scripts.fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def class_distribution(y: np.ndarray, n_classes: int = 10) -> list[float]:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return (counts / counts.sum()).tolist()


def feature_section(x: np.ndarray, bins: int = 10, input_name: str = "input") -> dict:
    """A drift baseline's ``features`` section for rows of ``x`` (batch first, the rest
    flattened): the training range and each feature's shares over its ``bins``-quantile bins
    (modelops.drift's format, as the pipelines write it)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    edges = [np.unique(np.quantile(c, np.linspace(0, 1, bins + 1)[1:-1])) for c in flat.T]
    shares = [np.bincount(np.digitize(c, e), minlength=len(e) + 1) / len(c)
              for c, e in zip(flat.T, edges, strict=True)]
    return {"input": input_name, "min": flat.min(0).tolist(), "max": flat.max(0).tolist(),
            "quantile_edges": [e.tolist() for e in edges],
            "bin_distribution": [s.tolist() for s in shares]}
