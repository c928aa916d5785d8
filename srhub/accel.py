"""Fast inference paths, chosen automatically behind :func:`srhub.upscale` (``fast=False`` turns them off).

On the **CPU**, PyTorch's eager convolutions are slow for these networks (Real-ESRGAN's
users pick ncnn builds for that reason). srhub exports the generator once to ONNX with
dynamic height and width (:mod:`srhub.export`) and runs the graph on a runtime made for
CPU inference, in this order of preference:

1. **OpenVINO** (``pip install openvino``): oneDNN (brgemm) convolutions in blocked
   layouts with the activations and residual adds fused in. Float32 by default. Where
   the CPU computes bfloat16 natively (AVX-512 BF16 or AMX), architectures measured
   with released weights against their float32 output run in reduced precision:

   * ``AUTO_BF16`` (SRVGGNetCompact): the whole graph in bfloat16
     (realesr-animevideov3-x4: ~0.2/255 mean abs, 58-60 dB).
   * ``AUTO_MIXED`` (RRDBNet): the model's ``mixed_bfloat16()`` copy, whose dense
     blocks (92% of the work) convolve in bfloat16 while the first convolution, the
     trunk's residual sums and the upsampler stay float32; the graph is compiled in
     float32 and OpenVINO runs the bfloat16 convolutions natively. On
     realesrgan-x4plus this is 1.8x faster than float32, 45.7-61.5 dB from it on
     Set5/Set14 (median 0.23/255 mean abs; 2 of 19 images above 0.5/255). Rounding the
     whole network to bfloat16 drifts further (median 0.43/255, 6 of 19 above 0.5/255),
     because the residual sums of the 23 blocks lose precision.

   Other architectures stay float32 until measured with released weights.
2. **ONNX Runtime** (``pip install onnxruntime``), float32.
3. **PyTorch** itself: a channels-last copy of the model under ``no_grad`` (not
   ``inference_mode``: its outputs must stay ordinary tensors that callers may modify
   in place); bfloat16 autocast when bf16 is asked for explicitly.

``precision="fp32"`` always gives a float32 path (equal to eager PyTorch within float
rounding); ``precision="bf16"`` asks for bfloat16 on any architecture (whole graph);
``"auto"`` is float32 except for ``AUTO_BF16`` and ``AUTO_MIXED`` architectures on
CPUs with native bf16; ``"fp16"`` on the CPU runs eager PyTorch. The exported graph is cached in memory per model (and its
weights' version) and on disk under ``$SRHUB_CACHE/onnx/``, keyed by a hash of the weights,
config and torch version, so an export (about ten seconds for RRDBNet, one for the small
models) happens once per machine. OpenVINO's compiled graphs are cached on disk too, under
``$SRHUB_CACHE/openvino/`` (OpenVINO's own model cache, keyed by the graph, the device and
the compile settings), so a new process's first call loads a compiled blob instead of
compiling (see ``benchmarks/app_resources.py --first-call``). Only srhub generators get a fast path.
A model that cannot be exported (or whose graph does not match PyTorch on sizes other
than the traced one) runs in eager PyTorch, with one warning.

On **CUDA** the prepared (fp16/bf16) model runs in channels-last memory format; with
``choose_plan(..., cuda_graphs=True)`` (opt-in; ``srhub.upscale`` does not ask for it)
each fixed tile shape is captured once into a CUDA graph and replayed. None of the
CUDA path has been measured on a GPU yet: ``benchmarks/speed.py --gpu`` is the check.

Graphs traced from a model whose forward branches on the input size are only used for
inputs at least :data:`MIN_FAST_SIDE` pixels a side (the smaller size the export is
verified on); smaller tiles run in PyTorch.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import queue
import threading
import warnings
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

RUNTIMES = ("openvino", "onnxruntime", "torch")
#: Architectures whose "auto" precision on a CPU with native bf16 is bfloat16 (measured on
#: realesr-animevideov3-x4: ~0.2/255 mean abs, ~60 dB PSNR against float32).
AUTO_BF16 = frozenset({"srvggnet-compact"})
#: Architectures whose "auto" precision on a CPU with native bf16 is their ``mixed_bfloat16()``
#: copy (bfloat16 convolutions, float32 residual sums) on OpenVINO: plan precision "mixed".
AUTO_MIXED = frozenset({"rrdbnet"})
#: Tiles with a side below this run in PyTorch (exported graphs are verified from 16 px up).
MIN_FAST_SIDE = 16

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Plan:
    """How a model will run: runtime ("openvino", "onnxruntime", "torch"), precision ("fp32",
    "bf16", "fp16", or "mixed": the model's ``mixed_bfloat16()`` copy) and device type."""

    runtime: str
    precision: str
    device: str
    cuda_graphs: bool = False


# ---------------------------------------------------------------------- what this machine has
def runtime_installed(name: str) -> bool:
    """Whether the Python package of a runtime can be imported ("torch" always can)."""
    return name == "torch" or importlib.util.find_spec(name) is not None


def installed_runtimes() -> tuple[str, ...]:
    return tuple(name for name in RUNTIMES if runtime_installed(name))


def cpu_description() -> str:
    """The CPU's model name, family and core count, for timing reports (e.g. "AMD EPYC (family 26,
    Zen 5), 2 cores"); AMD family 25 is Zen 3/4, 26 is Zen 5. Read from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        import platform

        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
    family = fields.get("cpu family", "?")
    zen = {"25": ", Zen 3/4", "26": ", Zen 5"}.get(family, "") if "AMD" in fields.get("vendor_id", "") else ""
    return f"{fields.get('model name', 'unknown CPU')} (family {family}, model {fields.get('model', '?')}{zen}), {os.cpu_count()} cores"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX-BF16: bfloat16 dot products in hardware."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None and check():
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(amx is not None and amx())


# ---------------------------------------------------------------------- selection
def choose_plan(
    model: nn.Module,
    *,
    device: torch.device | str,
    precision: str,
    runtimes: tuple[str, ...] | None = None,
    native_bf16: bool | None = None,
    cuda_graphs: bool = False,
) -> Plan | None:
    """The fast path for ``model`` on ``device`` at ``precision``, or None to run eager PyTorch.

    Only srhub generators (:class:`srhub.SRModel` subclasses) get a fast path; any other
    module runs as given.

    Args:
        precision: "auto", "fp32", "bf16" or "fp16", as given to :func:`srhub.upscale`.
        runtimes: the installed runtimes (default: detected), in order of preference.
        native_bf16: whether the CPU computes bf16 natively (default: detected).
        cuda_graphs: capture fixed tile shapes into CUDA graphs (CUDA only).
    """
    from .models.base import SRModel

    device = torch.device(device)
    runtimes = installed_runtimes() if runtimes is None else runtimes
    if not isinstance(model, SRModel) or getattr(model, "role", "generator") != "generator":
        return None  # only srhub's own generators: their forward is known to trace and export
    if device.type == "cuda":
        dtype = {"fp32": "fp32", "bf16": "bf16"}.get(precision, "fp16")
        return Plan("torch", dtype, "cuda", cuda_graphs=cuda_graphs)
    if device.type != "cpu" or precision == "fp16":
        return None
    native_bf16 = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    architecture = getattr(model, "architecture", None)
    if precision == "bf16":
        bf16 = True
    elif precision == "auto":
        bf16 = native_bf16 and architecture in AUTO_BF16 and "openvino" in runtimes
    else:
        bf16 = False
    if precision == "auto" and native_bf16 and architecture in AUTO_MIXED and "openvino" in runtimes:
        return Plan("openvino", "mixed", "cpu")
    if "openvino" in runtimes and (not bf16 or native_bf16):
        return Plan("openvino", "bf16" if bf16 else "fp32", "cpu")
    if "onnxruntime" in runtimes and not bf16:
        return Plan("onnxruntime", "fp32", "cpu")
    return Plan("torch", "bf16" if bf16 else "fp32", "cpu")


# ---------------------------------------------------------------------- exported graphs
def weights_hash(model: nn.Module) -> str:
    """SHA-256 of the config, parameter names, shapes, dtypes and bytes: the on-disk cache key."""
    digest = hashlib.sha256()
    digest.update(json.dumps(getattr(model, "config", type(model).__name__), sort_keys=True, default=str).encode())
    digest.update(torch.__version__.encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _onnx_cache_dir() -> Path:
    from .pretrained import cache_root

    return cache_root() / "onnx"


#: OpenVINO's compiled blobs kept on disk, in bytes; past it the least recently written go first.
OPENVINO_CACHE_BYTES = 2 * 2**30
_pruned: set[Path] = set()


def _openvino_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled graphs (None: the cache folder cannot be created).

    OpenVINO never deletes its blobs (one per graph, shape and setting), so once per process
    the folder is pruned to :data:`OPENVINO_CACHE_BYTES`, oldest blobs first.
    """
    from .pretrained import cache_root

    folder = cache_root() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    if folder not in _pruned:
        _pruned.add(folder)
        blobs = []
        for blob in folder.glob("*.blob"):
            try:
                stat = blob.stat()
                blobs.append((stat.st_mtime, stat.st_size, blob))
            except FileNotFoundError:
                pass
        total = sum(size for _, size, _ in blobs)
        for _, size, blob in sorted(blobs):
            if total <= OPENVINO_CACHE_BYTES:
                break
            blob.unlink(missing_ok=True)  # another process holding it open keeps reading it
            total -= size
    return folder


#: Architectures whose forward has no branch on the input size: their graphs need no verification.
_TRACE_SAFE = frozenset({"rrdbnet", "srvggnet-compact", "srcnn", "espcn", "fsrcnn", "srresnet"})


def graph_key(model: nn.Module, *, mixed: bool = False) -> str:
    """The cache key of ``model``'s exported graph: architecture, variant and weights hash."""
    architecture = getattr(model, "architecture", type(model).__name__.lower())
    return f"{architecture}{'-mixed' if mixed else ''}-{weights_hash(model)[:24]}"


def exported_graph(
    model: nn.Module, *, disk_cache: bool = True, mixed: bool = False, key: str | None = None
) -> bytes:
    """ONNX bytes of ``model`` (dynamic H/W), from the disk cache or exported (and verified) now.

    Every model's graph is cached on disk (``disk_cache``): RRDBNet's export takes ~10 s, and
    even a small model's second of export is most of a new process's first call.
    ``mixed`` exports the model's ``mixed_bfloat16()`` copy; the cache key is taken from the
    model itself, so a cache hit never builds that copy (seconds for RRDBNet).
    """
    from .export import export_onnx

    path = None
    if disk_cache:
        path = _onnx_cache_dir() / f"{key or graph_key(model, mixed=mixed)}.onnx"
        if path.is_file():
            return path.read_bytes()
    if mixed:
        builder = getattr(model, "mixed_bfloat16", None)
        if builder is None:
            raise ValueError(f"{type(model).__name__} has no mixed-precision form")
        model = builder()
    verify = getattr(model, "architecture", None) not in _TRACE_SAFE
    if verify and not runtime_installed("onnxruntime"):
        from .export import ExportError

        raise ExportError(f"{type(model).__name__}'s graph needs verification with onnxruntime, which is not installed")
    multiple = int(getattr(model, "size_multiple", 1))
    side = -(-64 // multiple) * multiple
    onnx_bytes = export_onnx(model, example_size=(side, side), verify=verify).onnx_bytes
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
            partial.write_bytes(onnx_bytes)
            partial.replace(path)
        except OSError as error:  # a read-only cache only costs the next process an export
            warnings.warn(f"could not cache the exported graph in {path.parent}: {error}", stacklevel=2)
    return onnx_bytes


class _Compiled:
    """One OpenVINO compiled model and a pool of its infer requests (one per concurrent caller)."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.requests: queue.SimpleQueue = queue.SimpleQueue()

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        try:
            request = self.requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            result = request.infer({0: array})[0]
            return torch.from_numpy(np.array(result, dtype=np.float32, copy=True))
        finally:
            self.requests.put(request)


# OpenVINO's compile_model saves the process-wide C locale, sets it to "C" and restores it. Two
# compiles at once in different threads (a served app's two requests, a compile ahead beside a first
# call) can interleave those calls so that the process is left in the "C" locale for good, where
# Python's open() and subprocess text default to ASCII. So srhub compiles one graph at a time.
_compile_lock = threading.Lock()


def _compile(core, graph, config: dict):
    """``core.compile_model(graph, "CPU", config)``, one at a time in this process."""
    with _compile_lock:
        return core.compile_model(graph, "CPU", config)


class _OpenVINORunner:
    """OpenVINO on the CPU: a static-shape compile per input shape (tiles repeat their shape;
    a static graph saves ~7 ms per call, which matters for small models on small tiles, and
    its first inference is faster), and the dynamic-shape graph for one-off shapes.

    Compiling is the slow part of a new process's first call, so it is cached on disk under
    ``$SRHUB_CACHE/openvino/``, keyed by ``key`` (the weights' hash, see :func:`graph_key`):

    * the graph as OpenVINO IR (``graph-KEY.xml``): later processes never read the ONNX
      graph (``onnx_bytes`` is only called on a miss);
    * each static shape compiled, as its own reshaped IR (``static-KEY-SHAPE.xml``, at most
      :data:`MAX_STATIC_IR` per graph): a shape compiled before is compiled from its file at
      first sight, which OpenVINO serves from its blob cache without reading the graph;
    * OpenVINO's compiled blobs (``CACHE_DIR``).

    A new shape runs on the dynamic graph until it is seen twice. At most ``max_static``
    shapes are kept in memory.
    """

    def __init__(
        self, onnx_bytes: Callable[[], bytes] | bytes, *, precision: str, threads: int, key: str | None = None,
        max_static: int = 4, name: str | None = None,
    ) -> None:  # fmt: skip
        import openvino as ov

        self.name = name  # a pretrained name: its last static graph is compiled ahead next time (see prewarm)
        self._first_call = True

        self.core = ov.Core()
        self.cache = _openvino_cache_dir()
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": int(threads),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._onnx = onnx_bytes if callable(onnx_bytes) else (lambda: onnx_bytes)
        if key is None:
            key = hashlib.sha256(self._onnx()).hexdigest()[:24]
        self.key = key
        if self.cache is not None:  # compiled blobs on disk: a new process loads instead of compiling
            self.core.set_property({"CACHE_DIR": str(self.cache)})
        self._graph = None
        self._dynamic: _Compiled | None = None
        self.static: OrderedDict[tuple, _Compiled] = OrderedDict()
        self.seen: dict[tuple, int] = {}
        self.max_static = max_static
        self.lock = threading.Lock()

    @property
    def graph(self):
        """The dynamic-shape ov.Model: the cached IR, else the ONNX graph (written to the cache as IR)."""
        if self._graph is None:
            self._graph = self._cached_ir() if self.cache is not None else None
            if self._graph is None:
                self._graph = self.core.read_model(self._onnx())
        return self._graph

    def _cached_ir(self):
        import openvino as ov

        xml = self.cache / f"graph-{self.key}.xml"
        try:
            if xml.is_file() and xml.with_suffix(".bin").is_file():
                return self.core.read_model(str(xml))
            graph = self.core.read_model(self._onnx())
            _save_ir(ov, graph, xml)
            return graph
        except (OSError, RuntimeError) as error:  # a damaged or read-only cache costs speed, not correctness
            warnings.warn(f"OpenVINO graph cache unavailable in {self.cache}: {error}", stacklevel=3)
            return None

    def _static_ir(self, shape: tuple) -> Path | None:
        if self.cache is None:
            return None
        return self.cache / f"static-{self.key}-{'x'.join(map(str, shape))}.xml"

    @property
    def dynamic(self) -> _Compiled:
        if self._dynamic is None:
            self._dynamic = _Compiled(_compile(self.core, self.graph, self.config))
        return self._dynamic

    def _compile_static(self, shape: tuple) -> _Compiled:
        import openvino as ov

        path = self._static_ir(shape)
        if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
            ahead = _compiled_ahead(path, self.config)
            try:  # (never touch the file: OpenVINO's cache key for a path includes its modification time)
                compiled = _Compiled(ahead or _compile(self.core, str(path), self.config))
                _remember(self.name, path, self.config)
                return compiled
            except (OSError, RuntimeError):
                pass  # a damaged file: compile from the graph below and write it again
        graph = self.graph.clone()
        graph.reshape({0: list(shape)})
        if path is not None:
            try:
                _save_ir(ov, graph, path)
                statics = sorted(self.cache.glob(f"static-{self.key}-*.xml"), key=lambda p: p.stat().st_mtime)
                for old in statics[:-MAX_STATIC_IR]:
                    old.with_suffix(".bin").unlink(missing_ok=True)
                    old.unlink(missing_ok=True)
                compiled = _Compiled(_compile(self.core, str(path), self.config))
                _remember(self.name, path, self.config)
                return compiled
            except (OSError, RuntimeError):
                pass
        return _Compiled(_compile(self.core, graph, self.config))

    def _for_shape(self, shape: tuple) -> _Compiled:
        with self.lock:
            if shape in self.static:
                self.static.move_to_end(shape)
                return self.static[shape]
            self.seen[shape] = self.seen.get(shape, 0) + 1
            path = self._static_ir(shape)
            if self.seen[shape] < 2 and not (path is not None and path.is_file()):
                return self.dynamic
            compiled = self.static[shape] = self._compile_static(shape)
            while len(self.static) > self.max_static:
                self.static.popitem(last=False)
            return compiled

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(lq.detach().to("cpu", torch.float32).numpy())
        compiled = self._for_shape(tuple(array.shape))
        if self._first_call:  # a compile ahead serves the first call only: drop one that missed
            self._first_call = False
            if self.name is not None:
                _drop_ahead(self.name)
        return compiled(array)


#: Static-shape IR files kept on disk per graph (each holds a copy of the weights).
MAX_STATIC_IR = 4


# ---------------------------------------------------------------------- compiling while the weights load
# Even from OpenVINO's blob cache, creating a graph's CPU kernels takes time in every new process
# (0.19 s for RRDBNet at 96x96 on 2 Zen 5 cores). OpenVINO does it without Python's lock, so
# ``srhub.load(name)`` starts it in a thread before it reads the weights, for the static graph this
# name ran last (``recent-NAME.json``), and the two overlap. A guess only: the runner takes the result
# just for the very IR file (its name holds the weights hash) and settings it would compile itself,
# and only in its first call (one that misses drops it).
_ahead: dict[tuple[str, tuple], tuple[str, Future]] = {}  # (IR file, settings) -> (name, compile)
_ahead_lock = threading.Lock()


def _settings(config: dict) -> tuple:
    return tuple(sorted((str(k), str(v)) for k, v in config.items()))


def _plain_name(name: str | None) -> bool:
    """A name that can be part of a file name in the cache folder (never a path)."""
    return bool(name) and "/" not in name and os.sep not in name


def _remember(name: str | None, path: Path, config: dict) -> None:
    """Record that pretrained ``name`` last ran the static IR ``path`` with ``config``."""
    if not _plain_name(name):
        return
    record = path.parent / f"recent-{name}.json"
    try:
        partial = record.with_name(f"partial-{os.getpid()}-{threading.get_ident()}-{record.name}")
        partial.write_text(json.dumps({"xml": path.name, "config": config}))
        partial.replace(record)
    except OSError:
        pass  # a read-only cache: no compiling ahead next time


def prewarm(name: str) -> bool:
    """Start compiling, in a thread, the static graph pretrained ``name`` ran last in this cache.

    Returns whether it started: not without OpenVINO, a record and its IR file, nor for another
    thread count than the record's."""
    if not _plain_name(name) or not runtime_installed("openvino"):
        return False
    from .pretrained import cache_root

    folder = cache_root() / "openvino"
    try:
        record = json.loads((folder / f"recent-{name}.json").read_text())
        xml, config = folder / Path(record["xml"]).name, dict(record["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()) or config.get("INFERENCE_NUM_THREADS") != torch.get_num_threads():
        return False
    key = (str(xml), _settings(config))
    try:
        import openvino as ov  # here, not in the thread: importing holds Python's lock, compiling does not
    except Exception:  # noqa: BLE001 - a broken install: the runner reports it (and falls back) when it runs
        return False
    with _ahead_lock:
        if key in _ahead:
            return False
        future = Future()
        _ahead[key] = (name, future)

    def compile_ahead() -> None:
        try:
            core = ov.Core()
            core.set_property({"CACHE_DIR": str(folder)})
            future.set_result(_compile(core, str(xml), config))
        except BaseException as error:  # noqa: BLE001 - handed to the runner, which then compiles itself
            future.set_exception(error)

    # Not a daemon: a process that exits mid-compile waits for it rather than unloading OpenVINO under it.
    try:
        threading.Thread(target=compile_ahead, name=f"srhub-prewarm-{name}").start()
    except RuntimeError:  # no thread to be had: the first call compiles as before
        _drop_ahead(name)
        return False
    return True


def _drop_ahead(name: str) -> None:
    """Forget the compiles started for ``name`` that its first call did not take (their memory with them)."""
    with _ahead_lock:
        for key in [key for key, (owner, _) in _ahead.items() if owner == name]:
            del _ahead[key]


def _compiled_ahead(path: Path, config: dict):
    """The compile :func:`prewarm` started for this IR file and settings, else None (also if it failed)."""
    with _ahead_lock:
        _, future = _ahead.pop((str(path), _settings(config)), (None, None))
    try:
        return future.result() if future is not None else None
    except Exception:  # noqa: BLE001 - the runner compiles it itself
        return None


def _save_ir(ov, graph, xml: Path) -> None:
    """Write ``graph`` as IR at ``xml`` (+ ``.bin``) through a partial name, so readers never see half a file."""
    partial = xml.with_name(f"partial-{os.getpid()}-{threading.get_ident()}-{xml.name}")
    ov.save_model(graph, str(partial), compress_to_fp16=False)
    partial.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    partial.replace(xml)


class _OnnxRuntimeRunner:
    def __init__(self, onnx_bytes: bytes, *, threads: int) -> None:
        from .export import onnxruntime_session

        self.session = onnxruntime_session(onnx_bytes, threads=threads)

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        from .export import INPUT_NAME, OUTPUT_NAME

        array = np.ascontiguousarray(lq.detach().to("cpu", torch.float32).numpy())
        (sr,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(sr)


class _TorchRunner:
    """A channels-last copy of the prepared model; bf16 autocast on the CPU when asked."""

    def __init__(self, net: nn.Module, *, autocast_bf16: bool) -> None:
        self.net = copy.deepcopy(net).to(memory_format=torch.channels_last).eval()
        self.autocast_bf16 = autocast_bf16

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        x = lq.contiguous(memory_format=torch.channels_last)
        # no_grad, not inference_mode: an inference tensor returned from here would make the
        # caller's in-place post-processing (clamp_, alpha division) fail.
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            sr = self.net(x.float() if self.autocast_bf16 else x)
        return sr.float().contiguous() if self.autocast_bf16 else sr.contiguous()


class _CudaGraphRunner:
    """Captures ``net`` once per input shape into a CUDA graph and replays it (static buffers, one caller at a time)."""

    def __init__(self, net: Runner, *, max_graphs: int = 4) -> None:
        self.net = net
        self.max_graphs = max_graphs
        self.graphs: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def _capture(self, lq: torch.Tensor):
        static_in = lq.clone()
        side = torch.cuda.Stream(device=lq.device)
        side.wait_stream(torch.cuda.current_stream(lq.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm-up (cuDNN autotuning, allocator) outside the capture
                self.net(static_in)
        torch.cuda.current_stream(lq.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.net(static_in)
        return graph, static_in, static_out

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        key = (tuple(lq.shape), lq.dtype, lq.device)
        with self.lock:
            entry = self.graphs.get(key)
            if entry is None:
                entry = self.graphs[key] = self._capture(lq)
                while len(self.graphs) > self.max_graphs:
                    self.graphs.popitem(last=False)
            graph, static_in, static_out = entry
            static_in.copy_(lq)
            graph.replay()
            return static_out.clone()


class _WithFallback:
    """Runs tiles with a side below ``MIN_FAST_SIDE`` in ``net`` (PyTorch), the rest in ``fast``.

    If the runtime fails on a tile, that tile is run in PyTorch with a warning (once per runner).
    """

    def __init__(self, fast: Runner, net: Runner, plan: Plan) -> None:
        self.fast, self.net, self.plan = fast, net, plan
        self.warned = False

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        if min(lq.shape[-2:]) < MIN_FAST_SIDE:
            return self.net(lq)
        try:
            return self.fast(lq)
        except Exception as error:  # noqa: BLE001 - the runtime's errors are not PyTorch's; eager is the reference
            if not self.warned:
                self.warned = True
                warnings.warn(
                    f"{self.plan.runtime} failed on a {tuple(lq.shape)} tile ({type(error).__name__}: {error}); "
                    "running it in eager PyTorch",
                    stacklevel=2,
                )
            return self.net(lq)


def make_runner(model: nn.Module, net: nn.Module, plan: Plan, *, threads: int | None = None) -> Runner:
    """Build the callable for ``plan``: ``runner(lq) -> sr`` (float32 for CPU runtimes)."""
    threads = threads or torch.get_num_threads()
    if plan.device == "cuda":
        fast: Runner = _TorchRunner(net, autocast_bf16=False)
        return _CudaGraphRunner(fast) if plan.cuda_graphs else fast
    if plan.runtime == "torch":
        return _TorchRunner(net, autocast_bf16=plan.precision == "bf16")
    mixed = plan.precision == "mixed"
    if mixed and plan.runtime != "openvino":
        raise ValueError("mixed precision runs on OpenVINO only (its bfloat16 convolutions in a float32 graph)")
    if mixed and getattr(model, "mixed_bfloat16", None) is None:
        raise ValueError(f"{type(model).__name__} has no mixed-precision form")
    key = graph_key(model, mixed=mixed)
    if plan.runtime == "openvino":
        # With the graph already in OpenVINO's cache, the ONNX graph is read only if that copy fails;
        # otherwise it is exported now, so an export failure falls back to eager once, here.
        folder = _openvino_cache_dir()
        if folder is not None and (folder / f"graph-{key}.xml").is_file():
            onnx: Callable[[], bytes] | bytes = lambda: exported_graph(model, mixed=mixed, key=key)  # noqa: E731
        else:
            onnx = exported_graph(model, mixed=mixed, key=key)
        fast = _OpenVINORunner(onnx, precision=plan.precision, threads=threads, key=key,
                               name=getattr(model, "pretrained_name", None))
    elif plan.runtime == "onnxruntime":
        fast = _OnnxRuntimeRunner(exported_graph(model, key=key), threads=threads)
    else:
        raise ValueError(f"unknown runtime {plan.runtime!r}; expected one of {RUNTIMES}")
    return _WithFallback(fast, net, plan)


# ---------------------------------------------------------------------- cache and the hook used by srhub.inference
_lock = threading.Lock()
# (id(model), plan, threads) -> (weak reference to the model, weights fingerprint, runner)
_runners: dict[tuple, tuple[weakref.ref, tuple, Runner]] = {}
_failed: set[tuple] = set()
_CACHE_SIZE = 4


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def fast_forward(
    model: nn.Module,
    net: nn.Module,
    *,
    device: torch.device,
    precision: str,
    plan: Plan | None = None,
) -> Runner:
    """The callable ``tiled_forward`` runs tiles with: a fast path for ``model`` if one applies, else ``net``.

    ``net`` is the model as prepared for ``device`` and the requested dtype (eager PyTorch);
    it is also the fallback for tiny tiles. Runners are cached per model, plan and thread
    count, and rebuilt when the weights change.
    """
    plan = plan or choose_plan(model, device=device, precision=precision)
    if plan is None:
        return net
    threads = torch.get_num_threads()
    key = (id(model), plan, threads, str(device))
    fingerprint = _fingerprint(model)
    with _lock:
        entry = _runners.get(key)
        if entry is not None and entry[0]() is model and entry[1] == fingerprint:
            return entry[2]
        failed_key = (*key, fingerprint)
        if failed_key in _failed:
            return net
        try:
            runner = make_runner(model, net, plan, threads=threads)
        except Exception as error:  # noqa: BLE001 - any failure of an optional runtime falls back to PyTorch
            _failed.add(failed_key)
            warnings.warn(
                f"fast {plan.runtime} path unavailable for {type(model).__name__} ({type(error).__name__}: {error}); "
                "running eager PyTorch",
                stacklevel=3,
            )
            return net
        _runners.pop(key, None)
        _runners[key] = (weakref.ref(model), fingerprint, runner)
        while len(_runners) > _CACHE_SIZE:
            _runners.pop(next(iter(_runners)))
        return runner


# ---------------------------------------------------------------------- FLOPs (for throughput figures)
def conv_flops(model: nn.Module, shape: tuple[int, int, int, int]) -> int:
    """Floating-point operations (2 per multiply-add) of the convolutions of one forward on ``shape``.

    Runs the model on the meta device (no memory, no compute); other layers are not counted.
    """
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            meta(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total
