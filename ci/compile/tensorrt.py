"""TensorRT backend (TensorRT 10.x Python API), for runners with an NVIDIA GPU.

``tensorrt`` is an optional dependency, imported only inside :class:`TensorRTBackend` methods.
Everything that decides *what* to build (profile shapes, precision flags, calibration batches,
sidecar metadata, refusal of foreign engines, naming unsupported nodes) is a pure function here,
unit-tested without TensorRT.

The build follows NVIDIA's documented sequence: ``trt.Builder`` -> ``create_network(0)``
(explicit batch is the only mode in 10.x) -> ``trt.OnnxParser.parse`` -> builder config
(``set_memory_pool_limit(WORKSPACE)``, ``BuilderFlag.FP16/INT8``, an optimisation profile for
the dynamic batch axis, a persistent timing cache) -> ``build_serialized_network``.

INT8 uses implicit quantisation with ``IInt8EntropyCalibrator2`` and a calibration cache. NVIDIA
deprecated implicit quantisation in TensorRT 10.1 in favour of explicit (Q/DQ) quantisation; it
still builds in 10.x. The explicit path is to quantise the ONNX model with Q/DQ nodes first (the
onnxruntime backend's int8 does exactly that) and build it with ``precision: fp16``/``fp32``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops.ci.compile.base import BuildResult, Log
from modelops.errors import InputError
from modelops.fsutil import atomic_write_bytes, sha256_file, write_json
from modelops.settings.compile import BatchProfile, Calibration, CompileParams

SIDECAR_SUFFIX = ".json"
SIDECAR_SCHEMA = 1


# --------------------------------------------------------------------------- the CUDA device

@dataclass(frozen=True)
class CudaDevice:
    name: str
    compute_capability: str  # "9.0"


def cuda_devices(library: str = "libcuda.so.1") -> list[CudaDevice]:
    """The CUDA devices the driver reports, through the driver API (no Python package needed).

    An empty list means no driver or no device: the report then says ``no CUDA device``.
    """
    try:
        cuda = ctypes.CDLL(library)
    except OSError:
        return []
    if cuda.cuInit(0) != 0:
        return []
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    devices = []
    for ordinal in range(count.value):
        dev = ctypes.c_int(0)
        if cuda.cuDeviceGet(ctypes.byref(dev), ordinal) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
        devices.append(CudaDevice(name.value.decode(errors="replace"),
                                  f"{major.value}.{minor.value}"))
    return devices


# --------------------------------------------------------------------------- pure build logic

def profile_shapes(input_shape: Sequence[int | str | None], profile: BatchProfile,
                   *, model: str = "model.onnx", input_name: str = "input"
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes for the optimisation profile of the first (batch) axis.

    ``input_shape`` is the ONNX input shape: ints for fixed dims, a name or None for dynamic
    ones. Only the batch axis may be dynamic; a fixed batch must lie inside the profile.
    """
    if profile.min > profile.max or not profile.min <= profile.opt <= profile.max:
        raise InputError(f"batch profile min/opt/max {profile.min}/{profile.opt}/{profile.max} "
                         "is not ordered", hint="set min <= opt <= max in compile.batch_profile")
    if not input_shape:
        raise InputError(f"{model}: input {input_name!r} has no shape; export it with a shape")
    rest = list(input_shape[1:])
    for axis, dim in enumerate(rest, 1):
        if not isinstance(dim, int) or dim <= 0:
            raise InputError(f"{model}: input {input_name!r} axis {axis} is dynamic ({dim!r}); "
                             "only the batch axis may be",
                             hint="export the model with fixed non-batch dimensions")
    batch = input_shape[0]
    fixed = isinstance(batch, int) and batch > 0
    if fixed and (batch != profile.min or batch != profile.max):
        raise InputError(f"{model}: input {input_name!r} has a fixed batch of {batch}, "
                         f"but compile.batch_profile asks for {profile.min}..{profile.max}",
                         hint="export with a dynamic batch axis (dynamic_axes)")
    dims = tuple(int(d) for d in rest)
    return (profile.min, *dims), (profile.opt, *dims), (profile.max, *dims)


def builder_flags(precision: str, *, fast_fp16: bool = True, fast_int8: bool = True
                  ) -> list[str]:
    """Names of ``trt.BuilderFlag`` members to set for a precision.

    int8 also sets FP16 so that layers without an int8 kernel fall back to fp16, not fp32.
    A GPU without fast kernels for the precision is refused rather than silently slow.
    """
    if precision == "fp32":
        return []
    if precision == "fp16":
        if not fast_fp16:
            raise InputError("this GPU has no fast fp16 kernels (platform_has_fast_fp16 is "
                             "false)", hint="use compile.precision: fp32 on this runner")
        return ["FP16"]
    if precision == "int8":
        if not fast_int8:
            raise InputError("this GPU has no fast int8 kernels (platform_has_fast_int8 is "
                             "false)", hint="use compile.precision: fp16 or fp32")
        return ["INT8", "FP16"] if fast_fp16 else ["INT8"]
    raise InputError(f"unknown precision {precision!r}; use fp32, fp16 or int8")


def fast_kernels(compute_capability: str) -> tuple[bool, bool]:
    """(fast fp16, fast int8) for a compute capability such as ``"8.6"``.

    Replaces ``Builder.platform_has_fast_fp16/int8``, deprecated in TensorRT 10.5 ("query data
    type support from CUDA directly"): fp16 tensor cores from 7.0, int8 (dp4a) from 6.1.
    """
    try:
        major, minor = (int(p) for p in compute_capability.split(".")[:2])
    except ValueError:
        raise InputError(f"unreadable compute capability {compute_capability!r}") from None
    return (major, minor) >= (7, 0), (major, minor) >= (6, 1)


def calibration_batches(x: np.ndarray, samples: int, batch_size: int, seed: int
                        ) -> list[np.ndarray]:
    """A seeded sample (without replacement) of ``x`` cut into whole batches.

    The same seed and data give the same batches, so the calibration cache stays valid across
    CI runs. ``samples`` is capped at ``len(x)`` and rounded down to whole batches.
    """
    n = min(samples, len(x))
    whole = (n // batch_size) * batch_size
    if whole == 0:
        raise InputError(f"calibration needs at least one batch of {batch_size} samples, the "
                         f"training split has {len(x)}",
                         hint="lower compile.calibration.batch_size")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=whole, replace=False)
    chosen = np.ascontiguousarray(x[idx], dtype=np.float32)
    return [chosen[i:i + batch_size] for i in range(0, whole, batch_size)]


@dataclass(frozen=True)
class UnsupportedNode:
    name: str
    op: str
    message: str


def unsupported_nodes(errors: Iterable[Any], node_names: Sequence[str] = (),
                      node_ops: Sequence[str] = ()) -> list[UnsupportedNode]:
    """Name the ONNX nodes behind TensorRT parser errors (``parser.get_error(i)`` objects).

    TensorRT >= 8.6 errors carry ``node_name()``/``node_operator()``; older ones only the node
    index ``node()``, which is resolved through ``node_names``/``node_ops`` (the ONNX graph's).
    """
    out: list[UnsupportedNode] = []
    for err in errors:
        name = _call(err, "node_name") or ""
        op = _call(err, "node_operator") or ""
        index = _call(err, "node")
        if isinstance(index, int) and 0 <= index < len(node_names):
            name = name or node_names[index] or f"node #{index}"
            if index < len(node_ops):
                op = op or node_ops[index]
        desc = str(_call(err, "desc") or err)
        out.append(UnsupportedNode(name or "<graph>", op or "?", desc.strip()))
    return out


def _call(obj: Any, attr: str) -> Any:
    fn = getattr(obj, attr, None)
    try:
        return fn() if callable(fn) else fn
    except Exception:  # a binding without this accessor
        return None


def format_parse_failure(model: str, nodes: list[UnsupportedNode]) -> str:
    if not nodes:
        return f"{model}: tensorrt could not parse the model (no error details)"
    parts = [f"{n.name} ({n.op}): {n.message}" for n in nodes[:5]]
    more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
    return f"{model}: tensorrt cannot build node(s) " + "; ".join(parts) + more


def cache_names(tensorrt_version: str, device: CudaDevice, onnx_sha256: str,
                calibration: Calibration) -> tuple[str, str]:
    """File names of the timing cache (per TensorRT version and GPU architecture, shared by
    all models) and of the int8 calibration cache (per model and calibration sample)."""
    cc = device.compute_capability.replace(".", "")
    timing = f"timing-trt{tensorrt_version}-sm{cc}.cache"
    calib = (f"calibration-{onnx_sha256[:16]}-n{calibration.samples}-b{calibration.batch_size}"
             f"-s{calibration.seed}.cache")
    return timing, calib


def make_sidecar(*, engine: Path, tensorrt_version: str, device: CudaDevice, precision: str,
                 shapes: tuple[tuple[int, ...], ...], input_name: str, build_seconds: float,
                 onnx_sha256: str, workspace_mb: int) -> dict[str, Any]:
    """The JSON written beside an engine: what it needs to run and where it came from."""
    return {
        "schema": SIDECAR_SCHEMA,
        "engine": engine.name,
        "engine_sha256": sha256_file(engine),
        "engine_bytes": engine.stat().st_size,
        "tensorrt_version": tensorrt_version,
        "gpu": device.name,
        "compute_capability": device.compute_capability,
        "precision": precision,
        "profile": {"input": input_name, "min": list(shapes[0]), "opt": list(shapes[1]),
                    "max": list(shapes[2])},
        "workspace_mb": workspace_mb,
        "build_seconds": round(build_seconds, 3),
        "onnx_sha256": onnx_sha256,
    }


def read_sidecar(engine: Path) -> dict[str, Any]:
    path = engine.with_name(engine.name + SIDECAR_SUFFIX)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{engine}: no sidecar {path.name} beside the engine; an engine "
                         "without it cannot be checked", hint="rebuild with modelops-ci "
                         "compile") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})",
                         hint="rebuild the engine with modelops-ci compile") from None
    required = ("engine_sha256", "tensorrt_version", "compute_capability", "gpu")
    missing = [k for k in required if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"{path}: missing field {missing[0]!r}",
                         hint="rebuild the engine with modelops-ci compile")
    return data


def check_engine_compatible(engine: Path, sidecar: dict[str, Any], *, tensorrt_version: str,
                            device: CudaDevice | None) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture, or altered.

    An engine is only valid on the TensorRT version and compute capability it was built with
    (unless built version- and hardware-compatible, which this suite does not do).
    """
    digest = sha256_file(engine)
    if digest != sidecar["engine_sha256"]:
        raise InputError(f"{engine}: sha256 {digest[:12]}... does not match its sidecar "
                         f"({str(sidecar['engine_sha256'])[:12]}...); the file was altered or "
                         "replaced", hint="rebuild it with modelops-ci compile")
    if sidecar["tensorrt_version"] != tensorrt_version:
        raise InputError(f"{engine}: built with tensorrt {sidecar['tensorrt_version']!r}, this "
                         f"runner has tensorrt {tensorrt_version!r}; engines are not portable "
                         "across tensorrt versions", hint="rebuild the engine on this runner")
    if device is None:
        raise InputError(f"{engine}: no CUDA device on this runner to run the engine",
                         hint="run on a GPU runner, or use compile.backend: onnxruntime")
    if sidecar["compute_capability"] != device.compute_capability:
        raise InputError(f"{engine}: built for {sidecar['gpu']!r} (compute capability "
                         f"{sidecar['compute_capability']}), this runner has {device.name!r} "
                         f"(compute capability {device.compute_capability})",
                         hint="rebuild the engine on this GPU architecture")


def onnx_io_shape(model: Path, input_name: str) -> tuple[list[int | str | None], list[str],
                                                          list[str]]:
    """The input's ONNX shape and the graph's node names and ops (for error messages)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    for inp in proto.graph.input:
        if inp.name == input_name:
            dims: list[int | str | None] = []
            for d in inp.type.tensor_type.shape.dim:
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                else:
                    dims.append(d.dim_param or None)
            break
    else:
        names = ", ".join(i.name for i in proto.graph.input)
        raise InputError(f"{model}: no input named {input_name!r} (inputs: {names})",
                         hint="set compile.input_name in params.yaml")
    return dims, [n.name for n in proto.graph.node], [n.op_type for n in proto.graph.node]


# --------------------------------------------------------------------------- TensorRT calls

class TensorRTBackend:
    name = "tensorrt"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt not installed"
        if not cuda_devices():
            return "no CUDA device"
        return None

    def build(self, model: Path, workdir: Path, cache_dir: Path, params: CompileParams,
              precision: str, calibration: list[np.ndarray] | None, log: Log) -> BuildResult:
        import tensorrt as trt

        device = cuda_devices()[0]
        shape, names, ops = onnx_io_shape(model, params.input_name)
        shapes = profile_shapes(shape, params.batch_profile, model=str(model),
                                input_name=params.input_name)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        log(f"parsing {model} with tensorrt {trt.__version__}")
        if not parser.parse(model.read_bytes(), str(model)):
            errors = [parser.get_error(i) for i in range(parser.num_errors)]
            raise InputError(format_parse_failure(str(model), unsupported_nodes(errors, names,
                                                                                ops)),
                             hint="replace the op(s) in the exporter, or use "
                                  "compile.backend: onnxruntime")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, params.workspace_mb << 20)
        fast_fp16, fast_int8 = fast_kernels(device.compute_capability)
        for flag in builder_flags(precision, fast_fp16=fast_fp16, fast_int8=fast_int8):
            member = getattr(trt.BuilderFlag, flag, None)
            if member is None:  # TensorRT 11 removed the weak-typing precision flags
                raise InputError(f"tensorrt {trt.__version__} has no BuilderFlag.{flag}; "
                                 f"precision {precision!r} needs tensorrt 10.x",
                                 hint="use compile.precision: fp32 with a Q/DQ-quantised "
                                      "model, or install tensorrt 10.x")
            config.set_flag(member)
        profile = builder.create_optimization_profile()
        profile.set_shape(params.input_name, *shapes)
        config.add_optimization_profile(profile)

        onnx_sha = sha256_file(model)
        names_ = cache_names(trt.__version__, device, onnx_sha, params.calibration)
        timing_path, calib_path = cache_dir / names_[0], cache_dir / names_[1]
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists()
                                           else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"timing cache {timing_path} does not match this GPU; starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
        calibrator = None
        if precision == "int8":
            if not calibration:
                raise InputError("tensorrt int8 needs calibration batches")
            calibrator = _make_calibrator(trt, calibration, calib_path)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)

        log(f"building a {precision} engine (profile {shapes[0][0]}/{shapes[1][0]}/"
            f"{shapes[2][0]}, workspace {params.workspace_mb} MiB)")
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        took = time.perf_counter() - start
        if serialized is None:
            raise InputError(f"{model}: tensorrt failed to build the engine (see the tensorrt "
                             "log above)", hint="try compile.precision: fp32 or a larger "
                                                "compile.workspace_mb")
        engine = workdir / "model.plan"
        atomic_write_bytes(engine, bytes(serialized))
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
        sidecar = make_sidecar(engine=engine, tensorrt_version=trt.__version__, device=device,
                               precision=precision, shapes=shapes,
                               input_name=params.input_name, build_seconds=took,
                               onnx_sha256=onnx_sha, workspace_mb=params.workspace_mb)
        sidecar_path = engine.with_name(engine.name + SIDECAR_SUFFIX)
        write_json(sidecar_path, sidecar)
        extra = [sidecar_path]
        return BuildResult(artifact=engine, precision=precision, build_seconds=took,
                           metadata=sidecar, extra_files=extra)

    def load(self, artifact: Path, params: CompileParams) -> TrtRunner:
        import tensorrt as trt

        devices = cuda_devices()
        check_engine_compatible(artifact, read_sidecar(artifact),
                                tensorrt_version=trt.__version__,
                                device=devices[0] if devices else None)
        return TrtRunner(artifact, params.input_name, params.output_name)


def _make_calibrator(trt: Any, batches: list[np.ndarray], cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` from device memory."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._buffer = _DeviceBuffer(batches[0].nbytes)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._buffer.upload(np.ascontiguousarray(batch, dtype=np.float32))
            return [self._buffer.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

    return Calibrator()


class _DeviceBuffer:
    """Device memory through the CUDA runtime API of ``cuda-python`` (installed with tensorrt
    on GPU runners by scripts/gpu-check.sh)."""

    def __init__(self, nbytes: int):
        self.cudart = _cudart()
        self.nbytes = nbytes
        err, self.ptr = self.cudart.cudaMalloc(nbytes)
        _check(err, "cudaMalloc")

    def upload(self, host: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.cudart.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind)[0],
               "cudaMemcpy")

    def download(self, host: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.cudart.cudaMemcpy(host.ctypes.data, self.ptr, host.nbytes, kind)[0],
               "cudaMemcpy")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.cudart.cudaFree(self.ptr)


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise InputError("the tensorrt backend needs cuda-python for device memory",
                             hint="pip install cuda-python") from None
    return cudart


def _check(err: Any, what: str) -> None:
    if int(err) != 0:
        raise RuntimeError(f"{what} failed with CUDA error {int(err)}")


class TrtRunner:
    """A deserialised engine; ``infer`` copies host -> device -> host around each call."""

    def __init__(self, engine_path: Path, input_name: str, output_name: str):
        import tensorrt as trt

        self.trt_logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.trt_logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise InputError(f"{engine_path}: tensorrt could not deserialise the engine",
                             hint="rebuild it on this runner with modelops-ci compile")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = input_name, output_name
        self.description = f"tensorrt {trt.__version__} ({cuda_devices()[0].name})"
        self.cudart = _cudart()
        err, self.stream = self.cudart.cudaStreamCreate()
        _check(err, "cudaStreamCreate")
        self._buffers: dict[int, tuple[_DeviceBuffer, _DeviceBuffer]] = {}

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.context.set_input_shape(self.input_name, x.shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = np.empty(out_shape, dtype=np.float32)
        if x.shape[0] not in self._buffers:
            self._buffers[x.shape[0]] = (_DeviceBuffer(x.nbytes), _DeviceBuffer(out.nbytes))
        d_in, d_out = self._buffers[x.shape[0]]
        d_in.upload(x)
        self.context.set_tensor_address(self.input_name, int(d_in.ptr))
        self.context.set_tensor_address(self.output_name, int(d_out.ptr))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("tensorrt execute_async_v3 failed")
        _check(self.cudart.cudaStreamSynchronize(self.stream)[0], "cudaStreamSynchronize")
        d_out.download(out)
        return out
