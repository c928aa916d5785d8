"""Benchmark runner: models x datasets x scales -> PSNR / SSIM table, as in the papers.

For each model, dataset and scale: every HR image is mod-cropped, its LR made
with MATLAB's bicubic (``srhub.data.BenchmarkDataset``), the model's output
clamped to [0, 1] and measured with :mod:`srhub.metrics`' protocol (8-bit,
Y of BT.601, ``crop_border = scale``, SSIM over the valid region); values are
averaged per image. Images stored as grayscale are measured on gray (the
output's full-range BT.601 luma, 0.299 R + 0.587 G + 0.114 B, which is the gray
value itself when the channels are equal), as the papers' MATLAB scripts do.

``bicubic`` is a model name too: MATLAB's ``imresize(lq, scale, 'bicubic')`` on
the 8-bit LR, the baseline row of every SR table.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import BenchmarkDataset, PairedFolderDataset
from .degradations import imresize
from .metrics import evaluate

logger = logging.getLogger(__name__)

BICUBIC = "bicubic"
PROTOCOL = (
    "PSNR/SSIM on the Y channel (BT.601, MATLAB rgb2ycbcr) of 8-bit images, border of `scale` pixels cropped, "
    "SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region; LR by MATLAB bicubic imresize "
    "(antialiased) of the mod-cropped HR, stored as 8 bits; grayscale images measured on gray; mean over images"
)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class BicubicUpsampler(nn.Module):
    """The bicubic baseline: MATLAB ``imresize`` of the 8-bit LR by ``scale`` (rounded to 8 bits, as MATLAB does)."""

    def __init__(self, *, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.size_multiple = 1

    def num_parameters(self) -> int:
        return 0

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        lq8 = (lq * 255.0).round().clamp(0, 255).to(torch.uint8)
        return imresize(lq8, scale=self.scale).to(lq.dtype) / 255.0


def _load_model(spec, device: str) -> tuple[str, nn.Module | None]:
    """``(display name, model)``; ``None`` stands for the bicubic baseline (built per scale)."""
    if isinstance(spec, str) and spec.lower() == BICUBIC:
        return BICUBIC, None
    if isinstance(spec, nn.Module):
        name = getattr(spec, "architecture", "") or type(spec).__name__
        return f"{name}-x{spec.scale}", spec.to(device).eval()
    if isinstance(spec, (str, os.PathLike)):
        from .hub import load

        return str(spec), load(spec, device=device).eval()
    raise TypeError(f"a model must be 'bicubic', a name/folder/Hub id or an SRModel, got {type(spec).__name__}")


def _to_gray(image: torch.Tensor) -> torch.Tensor:
    """8-bit quantised RGB (B, 3, H, W) -> full-range luma (B, 1, H, W) in [0, 1], float64, not rounded."""
    quantised = (image.to(torch.float64) * 255.0).round().clamp(0, 255)
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    return (quantised * weights).sum(dim=1, keepdim=True) / 255.0


@torch.no_grad()
def _super_resolve(model: nn.Module, lq: torch.Tensor, device: str) -> tuple[torch.Tensor, float]:
    """Run ``model`` on one (3, h, w) LR image (padded to the model's size multiple); returns (sr, seconds)."""
    scale = model.scale
    multiple = getattr(model, "size_multiple", 1)
    height, width = lq.shape[-2:]
    batch = lq.unsqueeze(0).to(device)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    sr = model(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return sr[..., : height * scale, : width * scale].float().clamp(0, 1).cpu(), seconds


def _datasets_for(spec, scale: int, data_root, download: bool):
    if isinstance(spec, PairedFolderDataset):
        return spec if spec.scale == scale else None
    return BenchmarkDataset(spec, scale=scale, data_root=data_root, download=download)


def run_benchmark(
    models: list,
    datasets: list,
    scales: list[int] | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    download: bool = False,
) -> list[dict]:
    """Measure each model on each dataset at each scale; one row per (model, dataset, scale).

    Args:
        models: ``"bicubic"``, names understood by :func:`srhub.load` (folders, Hub
            ids, pretrained names) or :class:`~srhub.models.base.SRModel` instances.
        datasets: benchmark names (``Set5``...), folders of HR images, or
            :class:`~srhub.data.PairedFolderDataset` instances (used at their own scale).
        scales: the scales to run; a model built for another scale is skipped with
            a logged note. ``None`` runs each model at its own scale (``bicubic``
            then needs explicit scales).
        data_root: where benchmark names are found (see :func:`srhub.data.default_data_root`).
        device: torch device for the models.
        progress: show a tqdm progress bar.
        download: fetch missing benchmark sets from the Hugging Face Hub.

    Rows: ``{model, dataset, scale, psnr, ssim, params, seconds_per_image, images}``.
    """
    if not models:
        raise ValueError("no models given")
    if not datasets:
        raise ValueError("no datasets given")
    if scales is not None:
        bad = [s for s in scales if isinstance(s, bool) or not isinstance(s, int) or s < 2]
        if bad or not scales:
            raise ValueError(f"scales must be integers >= 2, got {scales}")

    jobs = []  # (model name, {scale: model}), in the order given
    for spec in models:
        name, model = _load_model(spec, device)
        if model is None:
            if scales is None:
                raise ValueError("the bicubic baseline needs explicit scales")
            jobs.append((name, {s: BicubicUpsampler(scale=s) for s in scales}))
        elif getattr(model, "role", "generator") != "generator":
            raise ValueError(f"{name} is a {model.role}, not a super-resolution generator")
        elif scales is None or model.scale in scales:
            jobs.append((name, {model.scale: model}))
        else:
            logger.warning("skipping %s: it is built for x%d, not for the requested scales %s", name, model.scale, scales)

    work = []  # (model name, model, dataset, scale): per model, per dataset, per scale
    for name, by_scale in jobs:
        for spec in datasets:
            for scale, model in by_scale.items():
                dataset = _datasets_for(spec, scale, data_root, download)
                if dataset is None:
                    logger.warning("skipping %s on %s: the pairs are x%d, not x%d", name, spec.name, spec.scale, scale)
                    continue
                work.append((name, model, dataset, scale))

    rows = []
    bar = tqdm(total=sum(len(d) for _, _, d, _ in work), disable=not progress, unit="image", desc="benchmark")
    for name, model, dataset, scale in work:
        totals = {"psnr": 0.0, "ssim": 0.0}
        seconds = 0.0
        for item in dataset:
            bar.set_postfix_str(f"{name} {dataset.name} x{scale} {item.name}")
            sr, elapsed = _super_resolve(model, item.lq, device)
            seconds += elapsed
            gt = item.gt.unsqueeze(0)
            if item.name in dataset.grayscale:
                sr, gt, quantize = _to_gray(sr), (gt[:, :1].to(torch.float64) * 255.0).round() / 255.0, False
            else:
                quantize = True
            values = evaluate(sr, gt, crop_border=scale, y_channel=True, quantize=quantize)
            for key in totals:
                totals[key] += values[key]
            bar.update(1)
        count = len(dataset)
        rows.append(
            {
                "model": name,
                "dataset": dataset.name,
                "scale": scale,
                "psnr": totals["psnr"] / count,
                "ssim": totals["ssim"] / count,
                "params": int(model.num_parameters()),
                "seconds_per_image": seconds / count,
                "images": count,
            }
        )
    bar.close()
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (PSNR to 2 decimals, SSIM to 4, as the papers print them)."""
    lines = [
        "| model | params | dataset | scale | PSNR (dB) | SSIM | s / image | images |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['params']:,} | {row['dataset']} | x{row['scale']} | {row['psnr']:.2f} "
            f"| {row['ssim']:.4f} | {row['seconds_per_image']:.4f} | {row['images']} |"
        )
    return "\n".join(lines)


def write_results(rows: list[dict], prefix: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``PREFIX.json`` (protocol + rows) and ``PREFIX.md`` (protocol + table); returns both paths."""
    from . import __version__

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")
    payload = {"srhub_version": __version__, "protocol": PROTOCOL, "rows": rows}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(f"# srhub benchmark\n\nProtocol: {PROTOCOL}.\n\n{format_table(rows)}\n", encoding="utf-8")
    return json_path, md_path
