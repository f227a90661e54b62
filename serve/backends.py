"""Inference backends. A backend is one class satisfying :class:`Backend`, registered in
:data:`BACKENDS` (the dict also drives ``--backend`` choices and ``auto`` selection).

Each backend is built from the artifact's *bytes* (the ones whose sha256 was checked), never by
reopening its path, so a file swapped after verification is not what gets served.

- ``onnxruntime``: an ONNX model on ONNX Runtime; CUDA execution provider when present, CPU
  otherwise.
- ``tensorrt``: a serialized TensorRT engine (``.plan``/``.engine``); needs the ``tensorrt`` and
  ``cuda-python`` packages and an NVIDIA GPU. Imported only when chosen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from modelops.errors import InputError, SuiteError

DTYPES = {  # KServe v2 datatype <-> numpy
    "FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
    "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
}
ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int8)": "INT8",
              "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2 name, e.g. FP32
    shape: tuple[int, ...]  # -1 for a dynamic dimension

    def as_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class BackendInputError(Exception):
    """The model refused this input (a shape or type the graph cannot take): the client's
    problem, answered 400, not a server failure."""


class Backend(Protocol):
    platform: str
    device: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def _dims(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxRuntimeBackend:
    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, data: bytes, threads: int = 1, device: str = "auto"):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise InputError("--device cuda: onnxruntime has no CUDA execution provider here",
                             hint="install onnxruntime-gpu on a machine with an NVIDIA GPU, "
                                  "or use --device cpu")
        use_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda
                     else ["CPUExecutionProvider"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(data, opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(f"{path}: onnxruntime cannot load the model: "
                             f"{str(exc).splitlines()[0][:200]}",
                             hint="check that the file is the exported models/model.onnx") from exc
        self.device = "cuda" if use_cuda else "cpu"
        self.inputs = [TensorSpec(i.name, ONNX_TYPES.get(i.type, i.type), _dims(i.shape))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, ONNX_TYPES.get(o.type, o.type), _dims(o.shape))
                        for o in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self._input_error = InvalidArgument

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self._output_names, feeds)
        except self._input_error as exc:
            raise BackendInputError(str(exc).splitlines()[0][:300]) from None


class TensorRTBackend:
    platform = "tensorrt_plan"

    def __init__(self, path: Path, data: bytes, threads: int = 1, device: str = "auto"):
        try:
            import tensorrt as trt  # noqa: F401
            from cuda import cudart  # noqa: F401
        except ImportError as exc:
            raise SuiteError(
                "--backend tensorrt: the tensorrt and cuda-python packages are not installed",
                hint="run on an NVIDIA GPU image with TensorRT, or serve the ONNX model with "
                     "--backend onnxruntime") from exc
        if device == "cpu":
            raise InputError("--backend tensorrt needs --device cuda or auto (got 'cpu')")
        self._load(path, data)

    def _load(self, path: Path, data: bytes) -> None:  # pragma: no cover - needs TensorRT
        import tensorrt as trt
        from cuda import cudart

        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise InputError(f"{path}: not a TensorRT engine for this TensorRT version and GPU",
                             hint="rebuild it with `modelops-ci compile` on this GPU")
        self.context = self.engine.create_execution_context()
        self._trt, self._cudart = trt, cudart
        self.device = "cuda"
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        rev = {v: k for k, v in DTYPES.items()}
        specs = []
        for n in names:
            dt = np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
            specs.append((n, self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT,
                          TensorSpec(n, rev.get(dt.type, str(dt)),
                                     _dims(self.engine.get_tensor_shape(n)))))
        self.inputs = [s for _, is_in, s in specs if is_in]
        self.outputs = [s for _, is_in, s in specs if not is_in]

        self._lock = threading.Lock()  # one execution context: serialize

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:  # pragma: no cover
        cudart = self._cudart
        with self._lock:
            buffers = []
            for spec in self.inputs:
                arr = np.ascontiguousarray(feeds[spec.name])
                self.context.set_input_shape(spec.name, arr.shape)
                _, ptr = cudart.cudaMalloc(arr.nbytes)
                cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes,
                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                self.context.set_tensor_address(spec.name, ptr)
                buffers.append(ptr)
            outs = []
            for spec in self.outputs:
                shape = tuple(self.context.get_tensor_shape(spec.name))
                out = np.empty(shape, dtype=DTYPES.get(spec.datatype, np.float32))
                _, ptr = cudart.cudaMalloc(out.nbytes)
                self.context.set_tensor_address(spec.name, ptr)
                buffers.append(ptr)
                outs.append((out, ptr))
            self.context.execute_async_v3(0)
            cudart.cudaStreamSynchronize(0)
            for out, ptr in outs:
                cudart.cudaMemcpy(out.ctypes.data, ptr, out.nbytes,
                                  cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
            for ptr in buffers:
                cudart.cudaFree(ptr)
            return [o for o, _ in outs]


BACKENDS: dict[str, type] = {"onnxruntime": OnnxRuntimeBackend, "tensorrt": TensorRTBackend}


def pick_backend(name: str, path: Path) -> str:
    """``auto``: a TensorRT engine file (.plan/.engine) -> tensorrt, anything else onnxruntime."""
    if name != "auto":
        return name
    return "tensorrt" if path.suffix in (".plan", ".engine", ".trt") else "onnxruntime"


def load_backend(name: str, path: Path, threads: int = 1, device: str = "auto",
                 data: bytes | None = None) -> Backend:
    """The backend for ``path``, built from ``data`` (the verified bytes; read from ``path``
    only when not given, for tools and tests)."""
    if data is None:
        data = Path(path).read_bytes()
    return BACKENDS[pick_backend(name, path)](path, data, threads=threads, device=device)
