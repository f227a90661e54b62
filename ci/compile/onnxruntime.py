"""ONNX Runtime backend: graph optimisation level "all", the optimised model saved to disk.

Always available. Uses the CUDA execution provider when onnxruntime-gpu sees a device, else the
CPU provider. ``int8`` is static QDQ quantisation calibrated on the same seeded training sample
TensorRT uses; ``fp16`` is a TensorRT precision and is refused here with a hint.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from modelops.ci.compile.base import BuildResult, Log
from modelops.errors import InputError
from modelops.settings.compile import CompileParams


def providers() -> list[str]:
    """Execution providers to ask for, best first (CUDA only when the build has it)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def make_session(model: Path | bytes, *, optimize: bool, provider_list: list[str] | None = None,
                 optimized_path: Path | None = None, threads: int | None = None):
    """An InferenceSession with graph optimisation all (``optimize``) or disabled."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    source = model if isinstance(model, bytes) else str(model)
    # strict fp32 on CUDA: TF32 matmuls would fail the fp32 parity tolerances
    chosen = [(p, {"use_tf32": "0"}) if p == "CUDAExecutionProvider" else p
              for p in (provider_list or providers())]
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        raise InputError(f"{name}: onnxruntime cannot load the model: {exc}".replace("\n", " "),
                         hint="re-export the model (its dvc stage: dvc repro) and check its opset"
                         ) from None


class OrtRunner:
    """A loaded ONNX Runtime session with one input and one output."""

    def __init__(self, session, input_name: str, output_name: str, description: str):
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.description = description

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


def load_runner(model: Path, params: CompileParams, *, optimize: bool,
                provider_list: list[str] | None = None) -> OrtRunner:
    session = make_session(model, optimize=optimize, provider_list=provider_list)
    used = session.get_providers()[0]
    level = "all" if optimize else "disabled"
    return OrtRunner(session, params.input_name, params.output_name,
                     f"onnxruntime {_ort_version()} ({used}, graph optimisation {level})")


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


class _CalibrationReader:
    """onnxruntime.quantization's data reader over pre-sampled calibration batches."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self):
        return next(self._items, None)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime not installed"
        return None

    def build(self, model: Path, workdir: Path, cache_dir: Path, params: CompileParams,
              precision: str, calibration: list[np.ndarray] | None, log: Log) -> BuildResult:
        if precision == "fp16":
            raise InputError(
                "onnxruntime backend: precision 'fp16' is only built by tensorrt",
                hint="set compile.precision to fp32 or int8 in params.yaml, or pass "
                     "--precision fp32 on runners without tensorrt")
        start = time.perf_counter()
        source = model
        if precision == "int8":
            if not calibration:
                raise InputError("onnxruntime backend: int8 needs calibration batches")
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

            source = workdir / "model.int8.onnx"
            log(f"quantising to int8 (QDQ) on {sum(len(b) for b in calibration)} "
                "calibration samples")
            quantize_static(str(model), str(source),
                            _CalibrationReader(params.input_name, calibration),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8)
        artifact = workdir / "model.opt.onnx"
        log("optimising the graph with onnxruntime (level all)")
        session = make_session(source, optimize=True, optimized_path=artifact)
        took = time.perf_counter() - start
        extra = [source] if source != model else []
        return BuildResult(artifact=artifact, precision=precision, build_seconds=took,
                           metadata={"provider": session.get_providers()[0],
                                     "graph_optimization_level": "all",
                                     "onnxruntime": _ort_version()},
                           extra_files=extra)

    def load(self, artifact: Path, params: CompileParams) -> OrtRunner:
        # the artifact is already optimised; re-optimising would only re-apply the same passes
        return load_runner(artifact, params, optimize=True)
