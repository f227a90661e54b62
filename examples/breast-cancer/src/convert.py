"""Stage ``convert``: the fitted scikit-learn model as ONNX (skl2onnx), checked for parity.

The ONNX model has one input, ``features`` (float32 [N, 30], the columns of ``schema.json`` in
order), and two outputs: ``probabilities`` (float32 [N, 2], one column per class of the schema)
first, because a serving runtime takes the first output as the class scores, then ``label``
(int64 [N]). The feature and class names travel in the model's metadata.

Parity: ONNX Runtime must agree with scikit-learn's own ``predict_proba`` within
``convert.atol`` on every sample of both splits, and with ``predict`` on every label. A model
that does not is refused (exit 1) and nothing is written; ``eval/parity.json`` records the
agreement of the one that passed.
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
from common import (
    INPUT_NAME,
    MODEL_ONNX,
    MODEL_PKL,
    OUTPUT_NAMES,
    PARITY_JSON,
    TEST_NPZ,
    TRAIN_NPZ,
    CheckFailed,
    StageError,
    load_params,
    load_schema,
    progress,
    read_split,
    rounded,
    run_stage,
    write_bytes,
    write_json,
)


def to_onnx(clf, n_features: int, opset: int, features: tuple[str, ...],
            classes: tuple[str, ...]):
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    model = convert_sklearn(
        clf, name="breast-cancer-gbt",
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": False}},  # plain tensors, not a list of maps
        target_opset=opset)
    outputs = {o.name: onnx.ValueInfoProto() for o in model.graph.output}
    for o in model.graph.output:
        outputs[o.name].CopyFrom(o)
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise StageError(f"skl2onnx produced outputs {sorted(outputs)}, expected "
                         f"{sorted(OUTPUT_NAMES)}")
    del model.graph.output[:]
    model.graph.output.extend(outputs[name] for name in OUTPUT_NAMES)
    # skl2onnx lists the opsets in set order (it changes with the string hash seed): sorted,
    # the same model gives the same bytes, so DVC sees no change where there is none
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets)
    onnx.helper.set_model_props(model, {
        "feature_names": json.dumps(list(features)),
        "classes": json.dumps(list(classes)),
        "input": f"{INPUT_NAME}: float32 [N, {n_features}], columns in feature_names order",
    })
    model.doc_string = "Gradient-boosted trees on the Wisconsin breast cancer data set"
    onnx.checker.check_model(model, full_check=True)
    return model


def convert() -> None:
    params = load_params("convert")["convert"]
    schema = load_schema()
    x_train, _ = read_split(TRAIN_NPZ, schema)
    x_test, _ = read_split(TEST_NPZ, schema)
    try:
        # our own file, written by the fit stage and pinned in dvc.lock
        clf = pickle.loads(MODEL_PKL.read_bytes())  # noqa: S301
    except FileNotFoundError:
        raise StageError(f"{MODEL_PKL}: file not found", hint="run `dvc repro fit`") from None
    if tuple(getattr(clf, "feature_names_schema_", ())) != schema.features:
        raise StageError(f"{MODEL_PKL} was fitted on other columns than schema.json's",
                         hint="run `dvc repro fit`")
    model = to_onnx(clf, len(schema.features), params["opset"], schema.features,
                    schema.classes)
    data = model.SerializeToString()

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = np.concatenate([x_train, x_test])
    probabilities, labels = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    expected_p, expected_y = clf.predict_proba(x), clf.predict(x)
    diff = np.abs(probabilities.astype(np.float64) - expected_p)
    worst = int(diff.max(axis=1).argmax())
    disagree = np.flatnonzero(labels != expected_y)
    argmax_ok = bool((probabilities.argmax(axis=1) == labels).all())
    report = {
        "n": len(x),
        "max_abs_diff": float(f"{diff.max():.3e}"),
        "mean_abs_diff": float(f"{diff.mean():.3e}"),
        "atol": params["atol"],
        "label_agreement": rounded(1.0 - len(disagree) / len(x)),
        "argmax_is_label": argmax_ok,
        "opset": params["opset"],
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "onnxruntime": ort.__version__,
    }
    problems = []
    if diff.max() > params["atol"]:
        problems.append(f"max |p_onnx - p_sklearn| is {diff.max():.3e} > convert.atol "
                        f"{params['atol']:g} (sample {worst})")
    if len(disagree):
        problems.append(f"{len(disagree)} of {len(x)} labels differ from scikit-learn's "
                        f"predict (samples {disagree[:5].tolist()})")
    if not argmax_ok:
        problems.append("the label output is not the argmax of the probabilities")
    if problems:
        raise CheckFailed("onnx parity failed: " + "; ".join(problems),
                          hint="the ONNX model is not written; raise convert.atol only if "
                               "the difference is acceptable")
    write_bytes(MODEL_ONNX, data)
    write_json(PARITY_JSON, report)
    progress("convert", f"{MODEL_ONNX} ({len(data)} bytes): parity on {len(x)} samples, max "
                        f"|diff| {diff.max():.2e} <= {params['atol']:g}, labels equal")


if __name__ == "__main__":
    sys.exit(run_stage("convert", convert))
