"""How far a Set5 figure moves with the evaluation protocol, for srhub's shipped models.

    python benchmarks/protocol_gap.py fsrcnn-x3 fsrcnn-x2 fsrcnn-x4 espcn-x3

srhub measures as the SR papers' MATLAB code does: the HR image *cropped* to a multiple of the
scale (modcrop), LR by MATLAB-bicubic ``imresize``, Y-PSNR with ``scale`` border pixels cropped.
Some widely used PyTorch reproductions instead *resize* the HR image to that multiple with PIL's
bicubic filter, then make the LR image with PIL too. Where a side is not already a multiple of
the scale (4 of Set5's 5 images at x3, none at x2 or x4) that resampling smooths the reference,
and every model scores higher against it. This prints each model's Set5 Y-PSNR under the four
combinations, so that a figure quoted from elsewhere can be set beside srhub's table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import srhub  # noqa: E402
from srhub.data import BenchmarkDataset  # noqa: E402
from srhub.degradations import imresize  # noqa: E402
from srhub.metrics import psnr  # noqa: E402


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def pair(path: Path, scale: int, *, hr_by: str, lr_by: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(lq, gt) as float tensors in [0, 1], both 8-bit: HR made a multiple of ``scale`` by
    ``hr_by`` ("crop" or "resize"), LR by ``lr_by`` ("matlab" or "pil")."""
    with Image.open(path) as image:
        hr = image.convert("RGB")
    width, height = hr.width // scale * scale, hr.height // scale * scale
    hr = hr.crop((0, 0, width, height)) if hr_by == "crop" else hr.resize((width, height), Image.BICUBIC)
    gt = to_tensor(hr)
    if lr_by == "matlab":
        lq = imresize(gt, scale=1 / scale)
    else:
        lq = to_tensor(hr.resize((width // scale, height // scale), Image.BICUBIC))
    return lq.float() / 255, gt.float() / 255


@torch.no_grad()
def set5_psnr(model, files: list[Path], *, hr_by: str, lr_by: str) -> float:
    scores = []
    for path in files:
        lq, gt = pair(path, model.scale, hr_by=hr_by, lr_by=lr_by)
        sr = model(lq[None]).clamp(0, 1)
        scores.append(psnr(sr, gt[None], crop_border=model.scale, y_channel=True))
    return sum(scores) / len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="shipped model names (srhub.list_pretrained)")
    parser.add_argument("--data-root", default=None, help="folder holding Set5 (default: srhub.data.default_data_root)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    protocols = [("crop", "matlab"), ("crop", "pil"), ("resize", "matlab"), ("resize", "pil")]
    print("Set5 Y-PSNR (dB), border = scale; HR made a multiple of the scale by / LR made by")
    print(f"{'model':14s} " + " ".join(f"{h + ' / ' + l:>16s}" for h, l in protocols) + "   resize - crop (PIL LR)")
    for name in args.names:
        model = srhub.load(name).float().eval()
        files = BenchmarkDataset("Set5", scale=model.scale, data_root=args.data_root).files  # the set srhub measures
        values = [set5_psnr(model, files, hr_by=h, lr_by=l) for h, l in protocols]
        print(f"{name:14s} " + " ".join(f"{v:16.3f}" for v in values) + f"   {values[3] - values[1]:+.3f}")
    print("srhub's table uses crop / matlab (the papers' MATLAB protocol).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
