"""Upscaling videos: decode, super-resolve and encode frame by frame with PyAV.

``upscale_video(input, output, model=...)`` reads a video file with PyAV (FFmpeg in a
wheel: ``pip install srhub[video]``), runs every frame of its first video stream
through a model and writes a new file:

* **Streams.** Audio, subtitle, data and attachment streams are copied packet for
  packet (no re-encoding), as are the container's chapters and metadata. The video
  stream keeps its time base and every frame's timestamp (variable frame rate
  included), its rotation (display matrix), colour primaries, transfer, matrix and
  range, sample aspect ratio, language and title.
* **Codec.** H.264 (libx264), yuv420p, CRF 18 and preset "medium" by default;
  ``codec``, ``crf`` and ``preset`` choose others, ``lossless=True`` writes FFV1 (in
  .mkv, .avi or .mov). 10-bit input gives 10-bit output (yuv420p10le).
* **Two paths.** Luma models (SRCNN, FSRCNN, ESPCN and the PISR student, built with
  ``color_mode="y"``) see the decoded Y plane itself, which already is the
  studio-swing luma they were trained on; the chroma planes are resized bicubically
  (swscale), as the papers do. There is no RGB round trip. On the CPU the luma
  network is exported once to ONNX as one integer-plane-to-integer-plane graph
  (level conversion, network, rounding) and run by OpenVINO, which fuses each
  convolution with its activation; transposed convolutions (FSRCNN's) are rewritten
  as sub-pixel convolutions first (5x faster there). ESPCN's inner convolution runs
  in bfloat16 where the CPU computes it natively (AVX-512 BF16 / AMX), 0.03-0.05/255
  mean from float32 (``benchmarks/video.py`` prints the difference). Other models
  take frames as RGB through :func:`srhub.inference.tiled_forward`, the same fast
  path as images.
* **Overlap and memory.** A decoding thread, the model (in the calling thread) and an
  encoding thread are joined by short bounded queues, so the three stages overlap
  and at most a few batches of frames are in memory whatever the video's length.
  Frames go through the model ``batch_size`` at a time.
* **Progress.** A tqdm bar on stderr with frames per second and the time left.
* **Failure.** The output is written to a temporary file next to it and renamed at
  the end: an error or an interrupt leaves nothing half-written. A missing, empty,
  corrupt or non-video input raises :class:`VideoError` naming the file.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import uuid
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: File extensions treated as videos (by ``srhub video`` on folders and by the app).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi")
#: Short codec names accepted by ``codec=`` and the FFmpeg encoders they mean.
CODECS = {"h264": "libx264", "libx264": "libx264", "h265": "libx265", "hevc": "libx265", "libx265": "libx265",
          "ffv1": "ffv1", "mpeg4": "mpeg4"}  # fmt: skip
DEFAULT_CODEC = "h264"
DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
DEFAULT_BATCH = 4
#: A batch holds at most this many input pixels (at least one frame): the network's feature maps
#: (ESPCN: 96 float32 channels a pixel) grow with it; 4 frames of 360p, 1 of 720p.
MAX_BATCH_PIXELS = 1_000_000
#: Containers FFV1 (``lossless=True``) can be written into.
LOSSLESS_CONTAINERS = (".mkv", ".avi", ".mov")
# Planar YUV formats the luma path works in, by (chroma subsampling, bit depth).
_PLANAR = {
    "yuv420p": (2, 2, 8), "yuv422p": (2, 1, 8), "yuv444p": (1, 1, 8),
    "yuv420p10le": (2, 2, 10), "yuv422p10le": (2, 1, 10), "yuv444p10le": (1, 1, 10),
}  # fmt: skip
#: Luma architectures whose "auto" precision is bfloat16 on CPUs that compute it natively (measured with the
#: shipped weights by benchmarks/video.py: ESPCN x3 2x faster, 0.03-0.05/255 from float32). FSRCNN runs
#: slower in bfloat16 (its 12-channel layers are too thin) and drifts 0.2-0.4/255: it stays float32.
LUMA_AUTO_BF16 = frozenset({"espcn"})
# AVColorRange: 2 is JPEG ("full") range.
_FULL_RANGE = 2


class VideoError(ValueError):
    """A video that cannot be read, written or processed; the message names the file."""


class VideoTooLarge(VideoError):
    """A video longer or larger than the caps given to :func:`upscale_video`."""


def _av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - depends on the installation flavour
        raise ImportError("video needs PyAV: pip install 'srhub[video]' (or pip install av)") from error
    return av


# ---------------------------------------------------------------------- what a file holds
@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, as read from its headers (no frame decoded)."""

    width: int
    height: int
    #: Frames per second (average), or None when the container does not say.
    fps: float | None
    #: Seconds, or None when unknown.
    duration: float | None
    #: Frame count from the header, else estimated from duration and rate (0 when unknown).
    frames: int
    pix_fmt: str | None
    codec: str
    has_audio: bool


def _open_input(path: Path):
    av = _av()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: not a video file, or a corrupt one ({error.strerror or error})") from error
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    return container


def _info(container, path: Path) -> VideoInfo:
    stream = container.streams.video[0]
    context = stream.codec_context
    if not context.width or not context.height:
        raise VideoError(f"{path}: the video stream has no frame size (corrupt header?)")
    rate = stream.average_rate or stream.guessed_rate
    duration = None
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    frames = int(stream.frames or 0)
    if not frames and duration and rate:
        frames = int(round(duration * float(rate)))
    return VideoInfo(
        width=context.width, height=context.height, fps=float(rate) if rate else None, duration=duration,
        frames=frames, pix_fmt=context.pix_fmt, codec=context.name, has_audio=bool(container.streams.audio),
    )  # fmt: skip


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, duration and frame count of a video file's first video stream."""
    path = Path(path)
    container = _open_input(path)
    try:
        return _info(container, path)
    finally:
        container.close()


# ---------------------------------------------------------------------- planes <-> arrays
def _plane_array(plane, dtype) -> np.ndarray:
    """A writable numpy view of one plane (rows cut to the plane's width)."""
    itemsize = np.dtype(dtype).itemsize
    array = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
    return array[:, : plane.width]


def _copy_colour(source, target) -> None:
    for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
        setattr(target, name, getattr(source, name))


def is_luma_model(model: nn.Module) -> bool:
    """Whether ``model`` runs on luma alone (SRCNN, FSRCNN, ESPCN, PISR student with ``color_mode="y"``)."""
    return getattr(model, "color_mode", None) == "y" and callable(getattr(model, "forward_luma", None))


class LumaPlanes(nn.Module):
    """A luma model between integer Y planes: ``(B, 1, H, W)`` uint8 (8-bit) or int16 (10-bit) levels in,
    the same type out at ``scale`` times the size, rounded and clipped.

    Video luma in limited ("MPEG") range already is the studio-swing Y the models were
    trained on (8-bit 16..235 is their 16/255..235/255; 10-bit levels are 4x the 8-bit
    ones); full ("JPEG") range is mapped to it and back. Level conversion, network and
    rounding are one graph, so an exported copy runs end to end on integer planes.
    """

    def __init__(self, model: nn.Module, *, bits: int = 8, full_range: bool = False) -> None:
        super().__init__()
        if bits not in (8, 10):
            raise ValueError(f"bits must be 8 or 10, got {bits}")
        self.model = model
        self.unit = 255.0 * 2 ** (bits - 8)
        self.maximum = float(2**bits - 1)
        self.dtype = torch.uint8 if bits == 8 else torch.int16
        self.full_range = full_range

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = y.float() / self.unit
        if self.full_range:
            x = x * (219 / 255) + 16 / 255
        sr = self.model.forward_luma(x)
        if self.full_range:
            sr = (sr - 16 / 255) * (255 / 219)
        return torch.round(sr * self.unit).clamp(0, self.maximum).to(self.dtype)


class _BFloat16Conv(nn.Module):
    """A convolution computed in bfloat16 between float32 activations (OpenVINO runs it natively)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.to(torch.bfloat16)).to(x.dtype)


class _SubPixelDeconvolution(nn.Module):
    """A stride-s transposed convolution rewritten as a convolution on the low-resolution grid followed by a
    pixel shuffle: the same sums (each output phase sees its own sub-kernel), but a dense convolution,
    which CPU runtimes run far faster than a transposed one. Exact up to float rounding.
    """

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        if deconv.groups != 1 or deconv.dilation != (1, 1) or deconv.stride[0] != deconv.stride[1]:
            raise ValueError("only ungrouped, undilated transposed convolutions with equal strides are rewritten")
        s = deconv.stride[0]
        weight = deconv.weight.detach()  # (in, out, kH, kW)
        c_in, c_out, k_h, k_w = weight.shape
        taps = []
        for k, p in ((k_h, deconv.padding[0]), (k_w, deconv.padding[1])):
            # output q*s + r takes input q + d with kernel tap k = r + p - d*s, for 0 <= k < K
            offsets = [d for r in range(s) for d in range(-k, k + 1) if 0 <= r + p - d * s < k]
            taps.append((min(offsets), max(offsets)))
        (dy0, dy1), (dx0, dx1) = taps
        kernel = torch.zeros(c_out * s * s, c_in, dy1 - dy0 + 1, dx1 - dx0 + 1, dtype=weight.dtype)
        for ry in range(s):
            for rx in range(s):
                for ty, dy in enumerate(range(dy0, dy1 + 1)):
                    ky = ry + deconv.padding[0] - dy * s
                    if not 0 <= ky < k_h:
                        continue
                    for tx, dx in enumerate(range(dx0, dx1 + 1)):
                        kx = rx + deconv.padding[1] - dx * s
                        if 0 <= kx < k_w:
                            kernel[ry * s + rx :: s * s, :, ty, tx] = weight[:, :, ky, kx].T
        self.scale = s
        self.padding = (-dx0, dx1, -dy0, dy1)  # left, right, top, bottom
        self.conv = nn.Conv2d(c_in, c_out * s * s, kernel.shape[-2:], bias=deconv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(kernel)
            if deconv.bias is not None:
                self.conv.bias.copy_(deconv.bias.detach().repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(F.pad(x, self.padding)), self.scale)


def fast_luma_copy(model: nn.Module, *, bf16: bool) -> nn.Module:
    """A copy of a luma model for CPU runtimes: transposed convolutions rewritten as sub-pixel ones and, with
    ``bf16``, every convolution but the first and the last computed in bfloat16. Those two stay float32: the
    first sees the image's 8-bit levels and the last writes them, and bfloat16 (8 significant bits) cannot
    hold 8-bit levels above 0.5 exactly. Rounding either cost 0.26-0.45/255 mean on bright frames of
    ESPCN x3, against 0.03-0.05/255 with both kept in float32.
    """
    import copy

    model = copy.deepcopy(model).float().eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ConvTranspose2d) and child.stride[0] > 1:
                setattr(parent, name, _SubPixelDeconvolution(child))
    if bf16:
        convolutions = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
                        if isinstance(child, nn.Conv2d)]  # fmt: skip
        for parent, name in convolutions[1:-1]:
            setattr(parent, name, _BFloat16Conv(getattr(parent, name)))
    return model


class _OpenVINOPlanes:
    """An exported :class:`LumaPlanes` graph on OpenVINO, compiled for each batch shape it meets (few: full and last batch)."""

    def __init__(self, onnx_bytes: bytes, *, bf16: bool, threads: int, max_shapes: int = 3) -> None:
        import openvino as ov

        self.core, self.onnx_bytes, self.max_shapes = ov.Core(), onnx_bytes, max_shapes
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "INFERENCE_NUM_THREADS": int(threads),
                       "PERFORMANCE_HINT": "LATENCY"}  # fmt: skip
        self.compiled: dict[tuple, object] = {}

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        shape = tuple(planes.shape)
        if shape not in self.compiled:
            graph = self.core.read_model(self.onnx_bytes)
            graph.reshape({0: list(shape)})
            if len(self.compiled) >= self.max_shapes:
                self.compiled.pop(next(iter(self.compiled)))
            self.compiled[shape] = self.core.compile_model(graph, "CPU", self.config).create_infer_request()
        return np.array(self.compiled[shape].infer({0: planes})[0], copy=True)


def luma_runner(model: nn.Module, *, precision: str = "auto", device=None, fast: bool = True, bits: int = 8,
                full_range: bool = False):  # fmt: skip
    """``(run, description)``: ``run`` maps integer Y planes ``(B, 1, H, W)`` to upscaled ones (see :class:`LumaPlanes`).

    On the CPU with ``fast`` and OpenVINO installed, the exported graph of
    :func:`fast_luma_copy` runs there, in bfloat16 when ``precision`` is "bf16", or "auto"
    for ``LUMA_AUTO_BF16`` architectures on a CPU with native bfloat16 (AVX-512 BF16 /
    AMX); else eager PyTorch (channels-last, bf16 autocast when asked).
    """
    from . import accel
    from .inference import _prepared, resolve_device, resolve_dtype

    dev = resolve_device(device, model)
    planes = LumaPlanes(model, bits=bits, full_range=full_range)
    if dev.type != "cpu":
        dtype = resolve_dtype(precision, dev, model)
        net = _prepared(planes, dev, torch.float32)

        def run_device(y: np.ndarray) -> np.ndarray:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                return net(torch.from_numpy(y).to(dev)).cpu().numpy()

        return run_device, f"torch {dtype} on {dev}"
    if precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use auto, fp32 or bf16")
    architecture = getattr(model, "architecture", None)
    bf16 = precision == "bf16" or (precision == "auto" and architecture in LUMA_AUTO_BF16 and accel.cpu_has_native_bf16())
    net = _prepared(planes, dev, torch.float32)
    threads = torch.get_num_threads()
    if fast and accel.runtime_installed("openvino"):
        from .export import trace_onnx

        example = torch.randint(64, 200, (1, 1, 32, 32)).to(planes.dtype)
        rewritten = LumaPlanes(fast_luma_copy(model, bf16=bf16), bits=bits, full_range=full_range)
        runner = _OpenVINOPlanes(trace_onnx(rewritten, example), bf16=False, threads=threads)
        kind = "bf16 (first and last convolutions fp32)" if bf16 else "fp32"
        return runner, f"openvino {kind} on integer Y planes, {threads} threads"
    net = net.to(memory_format=torch.channels_last)

    def run_torch(y: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(torch.from_numpy(y)).numpy()

    return run_torch, f"torch {'bf16 autocast' if bf16 else 'fp32'}, {threads} threads"


def _resize_planes(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``(B, C, h, w)`` float planes (antialiased when shrinking)."""
    if tuple(planes.shape[-2:]) == tuple(size):
        return planes
    shrink = size[0] < planes.shape[-2] or size[1] < planes.shape[-1]
    return F.interpolate(planes, size=size, mode="bicubic", align_corners=False, antialias=shrink)


class _LumaFrames:
    """Frames in planar YUV: the Y plane through the luma network, chroma resized by swscale; no RGB conversion.

    The output frame is the input resized with swscale's bicubic filter (which gives the
    chroma planes) whose Y plane is then replaced by the network's.
    """

    def __init__(self, model: nn.Module, *, fmt: str, size: tuple[int, int], precision: str, device, fast: bool,
                 full_range: bool = False):  # fmt: skip
        self.model, self.fmt, self.size = model, fmt, size  # size: output (height, width)
        bits = _PLANAR[fmt][2]
        self.dtype = np.uint8 if bits == 8 else np.int16
        self.maximum = 2**bits - 1
        self.run, self.description = luma_runner(model, precision=precision, device=device, fast=fast, bits=bits,
                                                 full_range=full_range)  # fmt: skip

    def __call__(self, frames: list) -> list:
        height, width = self.size
        sources = frames
        # Same range in and out: swscale would otherwise squeeze "JPEG" (yuvj) levels into limited range.
        frames = [frame if frame.format.name == self.fmt else
                  frame.reformat(format=self.fmt, src_color_range=frame.color_range or None,
                                 dst_color_range=frame.color_range or None) for frame in frames]  # fmt: skip
        ys = np.stack([_plane_array(frame.planes[0], self.dtype) for frame in frames])[:, None]
        sr = self.run(ys)
        if sr.shape[-2:] != (height, width):  # outscale differs from the model's scale
            resized = _resize_planes(torch.from_numpy(sr.astype(np.float32)), (height, width))
            sr = resized.round_().clamp_(0, self.maximum).numpy().astype(self.dtype)
        out = []
        for i, frame in enumerate(frames):
            new = frame.reformat(width=width, height=height, format=self.fmt, interpolation="BICUBIC")
            _plane_array(new.planes[0], self.dtype)[...] = sr[i, 0]
            _copy_colour(sources[i], new)
            new.pts, new.time_base = frame.pts, frame.time_base
            out.append(new)
        return out


class _RGBFrames:
    """Frames converted to RGB (in their own colour matrix and range), through ``tiled_forward``, and back."""

    def __init__(self, model: nn.Module, *, fmt: str, size: tuple[int, int], deep: bool, precision: str,
                 device, fast: bool, tile: int, tile_overlap: int) -> None:  # fmt: skip
        self.model, self.fmt, self.size = model, fmt, size
        self.rgb, self.dtype, self.maximum = ("rgb48le", np.uint16, 65535.0) if deep else ("rgb24", np.uint8, 255.0)
        self.options = {"tile": tile, "tile_overlap": tile_overlap, "precision": precision, "device": device,
                        "fast": fast}  # fmt: skip
        self.description = "srhub.inference.tiled_forward (RGB)"

    def __call__(self, frames: list) -> list:
        from .inference import tiled_forward

        av = _av()
        arrays = []
        for frame in frames:
            full = frame.color_range == _FULL_RANGE or frame.format.name.startswith("yuvj")
            rgb = frame.reformat(format=self.rgb, src_color_range=_FULL_RANGE if full else (frame.color_range or None))
            arrays.append(rgb.to_ndarray())
        lq = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2).div_(self.maximum)
        sr = tiled_forward(self.model, lq, **self.options)
        if tuple(sr.shape[-2:]) != self.size:
            sr = _resize_planes(sr, self.size)
        sr = sr.clamp_(0, 1).mul_(self.maximum).round_().permute(0, 2, 3, 1).numpy().astype(self.dtype)
        out = []
        for i, frame in enumerate(frames):
            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(sr[i]), format=self.rgb)
            new = new.reformat(
                format=self.fmt, dst_colorspace=frame.colorspace or None,
                dst_color_range=frame.color_range or None,
            )  # fmt: skip
            _copy_colour(frame, new)
            new.pts, new.time_base = frame.pts, frame.time_base
            out.append(new)
        return out


# ---------------------------------------------------------------------- the pipeline
@dataclass
class VideoReport:
    """What :func:`upscale_video` wrote."""

    output: Path
    frames: int
    seconds: float
    width: int
    height: int
    path: str  # which frame path ran ("luma: openvino bf16, ..." or "rgb: ...")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


_END = ("end", None)


def discard_partial(target, partial: Path) -> None:
    """After a failure: close the output container if it is open (errors ignored) and delete its partial file."""
    if target is not None:
        try:
            target.close()
        except Exception:  # noqa: BLE001 - the file is deleted anyway
            pass
    partial.unlink(missing_ok=True)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return ("stopped", None)


def _output_format(codec: str, lossless: bool, pix_fmt: str | None, deep: bool) -> tuple[str, str]:
    """The encoder and its pixel format."""
    if lossless:
        encoder = "ffv1"
    else:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        encoder = CODECS[codec]
    if encoder == "ffv1" and pix_fmt in _PLANAR:
        return encoder, pix_fmt  # lossless keeps the chroma resolution and depth of the input
    if encoder == "mpeg4":
        return encoder, "yuv420p"
    return encoder, "yuv420p10le" if deep else "yuv420p"


def _bit_depth(pix_fmt: str | None) -> int:
    av = _av()
    if not pix_fmt:
        return 8
    try:
        return max(component.bits for component in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.error.FFmpegError):
        return 8


def upscale_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: nn.Module | str | os.PathLike,
    outscale: float | None = None,
    codec: str = DEFAULT_CODEC,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    lossless: bool = False,
    batch_size: int = DEFAULT_BATCH,
    tile: int = 512,
    tile_overlap: int = 32,
    precision: str = "auto",
    device: str | torch.device | None = None,
    fast: bool = True,
    overwrite: bool = False,
    max_duration: float | None = None,
    max_pixels: int | None = None,
    progress: bool = True,
    segment: tuple[int, int | None] | None = None,
    on_frames=None,
) -> VideoReport:
    """Upscale every frame of ``input``'s first video stream into ``output`` (see the module docstring).

    Args:
        model: a generator module, or a pretrained name / model folder / Hub repo id.
        outscale: final scale (default: the model's, or its released pipeline's); the
            size is rounded to even numbers for 4:2:0 output.
        codec: "h264" (libx264), "h265" (libx265), "ffv1" or "mpeg4".
        crf: constant rate factor for H.264/H.265 (0-51; lower is better; 18 is near transparent).
        preset: x264/x265 speed preset ("ultrafast" ... "veryslow").
        lossless: write FFV1 (mathematically lossless) whatever ``codec`` says; needs .mkv, .avi or .mov.
        batch_size: frames run through the model at once (fewer for large frames, see ``MAX_BATCH_PIXELS``).
        tile, tile_overlap, precision, device, fast: as in :func:`srhub.upscale` (tiles apply to RGB models).
        overwrite: replace an existing ``output`` (else :class:`FileExistsError`).
        max_duration: refuse videos longer than this many seconds (:class:`VideoTooLarge`).
        max_pixels: refuse videos whose *output* frames have more pixels than this.
        progress: show a tqdm progress bar (frames, fps, time left) on stderr.
        segment: ``(start, end)`` timestamps in the video stream's time base (``end`` None:
            to the end): only frames with ``start <= pts < end`` are upscaled and only the
            video stream is written. :mod:`srhub.distributed` gives each process one
            keyframe-aligned segment of a long video and joins them.
        on_frames: called with the number of frames written after each batch (progress of
            several processes summed by :mod:`srhub.distributed`).

    Raises:
        VideoError: a missing stream, a corrupt or non-video file, or a failure while decoding/encoding.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    from .inference import pipeline_outscale, resolve_model

    av = _av()
    input, output = Path(input), Path(output)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (0 <= crf <= 63):
        raise ValueError(f"crf must be between 0 and 51 (63 for 10-bit), got {crf}")
    if lossless and output.suffix.lower() not in LOSSLESS_CONTAINERS:
        raise ValueError(f"lossless FFV1 needs a {'/'.join(LOSSLESS_CONTAINERS)} output, not {output.name}")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (use --overwrite)")
    if output.resolve() == input.resolve():
        raise ValueError(f"{input}: the output would replace the input")
    if outscale is None:
        outscale = pipeline_outscale(model)
    model = resolve_model(model)
    scale = float(outscale) if outscale is not None else float(model.scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"outscale must be a positive number, got {outscale!r}")

    source = _open_input(input)
    info = _info(source, input)
    stream = source.streams.video[0]
    encoder, out_fmt = _output_format(codec, lossless, info.pix_fmt, _bit_depth(info.pix_fmt) > 8)
    width, height = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))
    if out_fmt.startswith(("yuv420", "yuv422")):
        width += width % 2
    if out_fmt.startswith("yuv420"):
        height += height % 2
    if max_duration is not None and info.duration is not None and info.duration > max_duration:
        source.close()
        raise VideoTooLarge(f"{input}: {info.duration:.1f} s is longer than the limit of {max_duration:g} s")
    if max_pixels is not None and width * height > max_pixels:
        source.close()
        raise VideoTooLarge(
            f"{input}: the output would be {width}x{height} ({width * height:,} pixels a frame), "
            f"over the limit of {max_pixels:,}"
        )
    try:
        first = _first_frame(input, stream.index)
    except BaseException:
        source.close()
        raise
    try:
        if is_luma_model(model):
            full_range = first.color_range == _FULL_RANGE or first.format.name.startswith("yuvj")
            frames_path = _LumaFrames(model, fmt=out_fmt if out_fmt in _PLANAR else "yuv420p", size=(height, width),
                                      precision=precision, device=device, fast=fast, full_range=full_range)  # fmt: skip
            path = f"luma: {frames_path.description}"
        else:
            frames_path = _RGBFrames(model, fmt=out_fmt, size=(height, width), deep=_bit_depth(out_fmt) > 8,
                                     precision=precision, device=device, fast=fast, tile=tile,
                                     tile_overlap=tile_overlap)  # fmt: skip
            path = f"rgb: {frames_path.description}"
    except BaseException:
        source.close()
        raise

    batch_size = max(1, min(batch_size, MAX_BATCH_PIXELS // (info.width * info.height)))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}.partial{output.suffix}")
    stream.thread_type = "AUTO"
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=2 * batch_size)
    upscaled: queue.Queue = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    counted = {"frames": 0}
    bar = tqdm(total=info.frames or None, desc=f"upscaling {input.name}", unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    import time

    started = time.perf_counter()
    target = None
    threads: list[threading.Thread] = []
    try:
        target = av.open(str(partial), "w")
        video, copied = _add_streams(source, target, stream, first, encoder, out_fmt, width, height, crf=crf,
                                     preset=preset, video_only=segment is not None)  # fmt: skip
        start, end = segment if segment is not None else (None, None)
        if start is not None:
            source.seek(start, stream=stream, backward=True, any_frame=False)

        def decode() -> None:
            try:
                for packet in source.demux(stream) if segment is not None else source.demux():
                    if stop.is_set():
                        return
                    if packet.stream.index == stream.index:
                        for frame in packet.decode():
                            if start is not None and frame.pts is not None and frame.pts < start:
                                continue
                            if end is not None and frame.pts is not None and frame.pts >= end:
                                return
                            if not _put(decoded, ("frame", frame), stop):
                                return
                    elif packet.stream.index in copied and packet.dts is not None:
                        if not _put(decoded, ("packet", packet), stop):
                            return
            except av.error.FFmpegError as error:
                errors.append(VideoError(f"{input}: cannot decode the video ({error.strerror or error})"))
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread
                errors.append(error)
            finally:
                _put(decoded, _END, stop)


        def encode() -> None:
            try:
                while True:
                    kind, item = _get(upscaled, stop)
                    if kind in ("end", "stopped"):
                        break
                    if kind == "packet":
                        item.stream = copied[item.stream.index]
                        target.mux(item)
                        continue
                    for frame in item:
                        target.mux(video.encode(frame))
                        counted["frames"] += 1
                    bar.update(len(item))
                    if on_frames is not None:
                        on_frames(len(item))
                if kind == "end":
                    target.mux(video.encode(None))
            except av.error.FFmpegError as error:
                errors.append(VideoError(f"{output}: cannot encode the video ({error.strerror or error})"))
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread
                errors.append(error)
            finally:
                if errors:
                    stop.set()

        reader = threading.Thread(target=decode, name="srhub-video-decode", daemon=True)
        writer = threading.Thread(target=encode, name="srhub-video-encode", daemon=True)
        threads += [reader, writer]
        reader.start()
        writer.start()
        batch: list = []
        while True:
            kind, item = _get(decoded, stop)
            if errors or kind == "stopped":
                break
            if kind == "packet":
                _put(upscaled, (kind, item), stop)
                continue
            if kind == "frame":
                if item.pts is None:
                    raise VideoError(f"{input}: a frame without a timestamp; remux the file first")
                if max_duration is not None and item.time is not None and item.time > max_duration:
                    raise VideoTooLarge(f"{input}: longer than the limit of {max_duration:g} s")
                batch.append(item)
            if batch and (len(batch) == batch_size or kind == "end"):
                if not _put(upscaled, ("frames", frames_path(batch)), stop):
                    break
                batch = []
            if kind == "end":
                _put(upscaled, _END, stop)
                break
        writer.join()
        stop.set()
        reader.join()
        if errors:
            raise errors[0]
        if not counted["frames"]:
            raise VideoError(f"{input}: no frame could be decoded")
        target.close()
        target = None
        os.replace(partial, output)
    except BaseException:
        stop.set()
        for thread in threads:  # they notice ``stop`` within 0.1 s; the file is closed only after them
            thread.join()
        discard_partial(target, partial)
        raise
    finally:
        bar.close()
        source.close()
    return VideoReport(output, counted["frames"], time.perf_counter() - started, width, height, path)


def _first_frame(path: Path, index: int):
    """The first decoded frame of stream ``index`` (its rotation and colour tags set up the output)."""
    av = _av()
    container = _open_input(path)
    try:
        for frame in container.decode(container.streams[index]):
            return frame
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: cannot decode the video ({error.strerror or error})") from error
    finally:
        container.close()
    raise VideoError(f"{path}: no frame could be decoded")


def _add_streams(source, target, video, first=None, encoder: str = "", pix_fmt: str = "", width: int = 0,
                 height: int = 0, *, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, video_only: bool = False,
                 video_template=None):  # fmt: skip
    """Output streams in the input's order: the upscaled ``video`` and copies of the rest.

    With ``video_template`` (an already encoded stream, when segments are joined) the
    video stream is a copy of that stream's parameters instead of a new encoder.

    Returns the output video stream and a map input index -> output stream of the copied
    ones (audio, subtitles, data, attachments, cover art). Chapters and metadata are copied.
    """
    av = _av()
    copied = {}
    out_video = None
    for stream in source.streams:
        if stream.index == video.index and video_template is not None:
            out_video = target.add_stream_from_template(video_template)
            out_video.metadata.update({k: v for k, v in stream.metadata.items() if k.lower() in ("language", "title")})
            out_video.disposition = stream.disposition
            continue
        if stream.index == video.index:
            out_video = _add_video(target, video, first, encoder, pix_fmt, width, height, crf=crf, preset=preset)
            continue
        if video_only:
            continue
        if stream.type == "video" and not stream.disposition & 1024:
            continue  # another video stream that is not cover art (attached_pic): not copied
        try:
            copied[stream.index] = target.add_stream_from_template(stream)
        except (ValueError, av.error.FFmpegError) as error:  # e.g. a subtitle codec MP4 cannot hold
            warnings.warn(f"stream {stream.index} ({stream.type}, {stream.codec_context.name if stream.codec_context else '?'}) "
                          f"cannot be copied into {target.format.name}: {error}; it is left out", stacklevel=3)
            continue
        copied[stream.index].metadata.update(stream.metadata)
        copied[stream.index].disposition = stream.disposition
    if video_only:
        return out_video, copied
    target.metadata.update(source.metadata)
    chapters = source.chapters()
    if chapters:
        target.set_chapters(chapters)
    return out_video, copied


def _add_video(target, source_stream, first, encoder: str, pix_fmt: str, width: int, height: int, *,
               crf: int, preset: str):  # fmt: skip
    """The output video stream, set up from the input stream and its first decoded frame."""
    rate = source_stream.average_rate or source_stream.guessed_rate or Fraction(25)
    options = {}
    if encoder in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset}
    elif encoder == "ffv1":
        options = {"level": "3", "g": "1"}
    stream = target.add_stream(encoder, rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.time_base = source_stream.time_base
    context = stream.codec_context
    context.time_base = source_stream.time_base
    context.thread_type = "AUTO"
    for name in ("color_primaries", "color_trc", "colorspace", "color_range"):
        value = getattr(first, name)
        if value:
            setattr(context, name, value)
    if source_stream.sample_aspect_ratio:
        stream.sample_aspect_ratio = source_stream.sample_aspect_ratio
    stream.metadata.update({k: v for k, v in source_stream.metadata.items() if k.lower() in ("language", "title", "handler_name")})
    stream.disposition = source_stream.disposition
    if first.rotation:
        stream.set_display_rotation(first.rotation)
    return stream
