"""Tiled against untiled output of the squeeze-excitation models (Real-CUGAN, waifu2x cunet).

    python benchmarks/se_tiling.py                      # released weights (the sr-vulkan packages)
    python benchmarks/se_tiling.py --tiles 96 160 --models realcugan-se-x2-denoise1x

For each model, one Set14 image (baboon, 500x480) runs whole and in tiles. Images larger than a
tile never run whole: their squeeze-excitation means come from one tiled pass per block
(``srhub.models.realcugan.tiled_means``). Prints the largest and mean difference (in 1/255)
and the seconds of each run, with the CPU model and thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import srhub
from srhub.accel import cpu_description
from srhub.inference import tiled_forward

MODELS = ["realcugan-se-x2-denoise1x", "realcugan-pro-x3-conservative", "realcugan-se-x4-no-denoise", "waifu2x-cunet-x1-noise3",
          "waifu2x-cunet-x2"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--tiles", type=int, nargs="*", default=[96, 224])
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "datasets" / "benchmark" / "Set14" / "baboon.png"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pil = Image.open(args.image).convert("RGB")
    lq = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    print(f"{cpu_description()}, {args.threads} threads; {Path(args.image).name} {pil.width}x{pil.height}, eager float32\n")
    print("| model | tile | max diff /255 | mean diff /255 | untiled s | tiled s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = srhub.load(name).eval()
        start = time.perf_counter()
        full = tiled_forward(model, lq, tile=0, fast=False)
        untiled = time.perf_counter() - start
        for tile in args.tiles:
            start = time.perf_counter()
            tiled = tiled_forward(model, lq, tile=tile, fast=False)
            seconds = time.perf_counter() - start
            difference = (tiled - full).abs() * 255
            print(f"| `{name}` | {tile} | {difference.max().item():.4f} | {difference.mean().item():.5f} | {untiled:.1f} | {seconds:.1f} |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
