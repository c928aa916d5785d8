"""Time Y-PSNR + SSIM of one 1024x644 image, before and after the separable valid-window SSIM.

    python benchmarks/metric_speed.py                 # 5 photos of photos-43, torch threads 2
    python benchmarks/metric_speed.py --images 3 --threads 1

"Before" is srhub's former SSIM, kept here as the reference: torchmetrics'
``structural_similarity_index_measure`` in float64 with ``return_full_image=True`` (a reflect-padded
11x11 ``conv2d`` over five stacked maps), averaged without its 5-pixel margin. "After" is
``srhub.metrics.evaluate(..., metrics=("psnr", "ssim"))``. The pairs are a 1024x644 crop of a
photo (ground truth) and its MATLAB-bicubic x4 round trip (the image a bicubic baseline scores),
measured with border 4 as the benchmark runner does. Prints the time per image (median of
``--repeats``) of each, the speed-up and the largest differences in PSNR and SSIM.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srhub import metrics  # noqa: E402
from srhub.accel import cpu_description  # noqa: E402
from srhub.data import _read_uint8  # noqa: E402
from srhub.degradations import imresize  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos-43"


def before(sr: torch.Tensor, gt: torch.Tensor, border: int) -> dict[str, float]:
    """srhub's metrics as they were: the PSNR is unchanged, the SSIM from torchmetrics' full map."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = metrics.prepare(sr, gt, crop_border=border)
    _, full = structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0, return_full_image=True
    )
    ssim = float(full[..., 5:-5, 5:-5].reshape(y.shape[0], -1).mean(dim=1).mean())
    return {"psnr": metrics._psnr(x, y), "ssim": ssim}


def after(sr: torch.Tensor, gt: torch.Tensor, border: int) -> dict[str, float]:
    return metrics.evaluate(sr, gt, crop_border=border, metrics=("psnr", "ssim"))


def pairs(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    files = sorted(PHOTOS.glob("*.png"))[:count]
    if not files:
        raise SystemExit(f"no photos in {PHOTOS}")
    out = []
    for path in files:
        image, _ = _read_uint8(path)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        height, width = image.shape[-2:]
        if min(height, width) < 644 or max(height, width) < 1024:
            continue
        if height > width:
            image = image.transpose(-1, -2)
            height, width = width, height
        top, left = (height - 644) // 2, (width - 1024) // 2
        gt = image[:, top : top + 644, left : left + 1024].contiguous()
        sr = imresize(imresize(gt, scale=1 / 4), scale=4)
        out.append((sr[None].float() / 255, gt[None].float() / 255))
    return out


def timed(function, sr, gt, repeats: int) -> tuple[float, dict[str, float]]:
    times, values = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        values = function(sr, gt, 4)
        times.append(time.perf_counter() - start)
    return statistics.median(times), values




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = pairs(args.images)
    print(f"{cpu_description()}, torch {torch.__version__}, {args.threads} threads; {len(data)} pairs of 1024x644, border 4")
    old_times, new_times, psnr_diff, ssim_diff = [], [], 0.0, 0.0
    for sr, gt in data:
        old_time, old = timed(before, sr, gt, args.repeats)
        new_time, new = timed(after, sr, gt, args.repeats)
        old_times.append(old_time)
        new_times.append(new_time)
        psnr_diff = max(psnr_diff, abs(old["psnr"] - new["psnr"]))
        ssim_diff = max(ssim_diff, abs(old["ssim"] - new["ssim"]))
        print(f"  before {old_time:.3f} s  after {new_time:.3f} s   PSNR {new['psnr']:.4f} dB  SSIM {new['ssim']:.6f}")
    old_mean, new_mean = statistics.mean(old_times), statistics.mean(new_times)
    print(f"Y-PSNR + SSIM per 1024x644 image: before {old_mean:.3f} s, after {new_mean:.3f} s "
          f"({old_mean / new_mean:.1f}x faster)")
    print(f"largest difference: PSNR {psnr_diff:.2e} dB, SSIM {ssim_diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
