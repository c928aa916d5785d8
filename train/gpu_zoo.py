"""Train srhub's zoo on one GPU inside a wall-clock budget: 4 heavy x4 models and 15 light ones.

    python benchmarks/pack_training_data.py --out local/gpu-data        # where the datasets are
    PYTHONUNBUFFERED=1 python train/gpu_zoo.py --data local/gpu-data --out $OUT --budget-seconds 520

Data: the 291-image set (Yang et al.'s 91 + BSDS300's 200 training images) as packed by
``benchmarks/pack_training_data.py``; LR by MATLAB-bicubic ``imresize`` of the 8-bit HR image
(made once per image on the device, as the benchmarks make it); random aligned crops drawn
into a pool on the device, with per-sample flips and transposes at every step.
Checkpoints are chosen on Set5 (Y-PSNR, border = scale), never on Set14.

Processes (one GPU, time-sliced): ``heavy`` trains BSRN, SRResNet, EBRN and RRDBNet (23 RRDBs,
L1) one after another under bf16 autocast with channels-last weights; four light workers run
beside it (SRCNN 9-5-5 + ESPCN; FSRCNN; BSRN-S; PISR) at x2, x3 and x4. Each model gets a share
of its worker's remaining time, and its learning rate follows a cosine over that time (a
2 % warm-up, down to 1 %), so the run ends on time whatever the throughput. FSRCNN follows
its paper: its 10 / 7 / 6 px LR sub-images at x2 / x3 / x4 in batches of 16, the deconvolution at
a tenth of the learning rate, scale augmentation (every image also downscaled by 0.9-0.6), x3 from scratch, then
x2 and x4 start from the x3 network and fine-tune its deconvolution alone, then every layer at
lr / 10 (the paper stops after the deconvolution). PISR trains its teacher, distils the student, then a plain FSRCNN with the same
data, loss and number of steps (teacher + student) for the paper's comparison. ESPCN follows its
91-image model: Yang et al.'s 91 images alone where the pack holds them (``RECIPE_DATA``), batches of
16 of its 17 px LR sub-images, the last layer at a tenth of the rate. With ``--features-from-x3``
ESPCN x2 and x4 start from the x3 network's two feature layers (this run's x3, else the shipped
one) and learn a fresh sub-pixel layer, FSRCNN's transfer idea applied to ESPCN.

With ``--from-shipped`` every model srhub ships starts from those weights (a warm restart at
0.3 x its learning rate), so that successive device runs add up instead of starting over.
``--parallel-jobs`` gives every light job its own process (the light models are bound by kernel
launches, not by the GPU), so each trains for the whole budget instead of a share of it:

    python train/gpu_zoo.py --out $OUT --budget-seconds 540 --from-shipped --parallel-jobs --models srcnn espcn fsrcnn

Every model keeps the weights (EMA or raw, whichever measured best) with the best Set5
PSNR. ``$OUT`` gets ``results.json`` (recipes, curves, best figures), ``log.txt`` and the
weights (srhub model folders) as ``weights.tar.partN`` (<= 15 MiB each); ship them with
``benchmarks/ship_gpu_zoo.py``. Changes from the papers: Adam everywhere (SRCNN, FSRCNN and
ESPCN used SGD), minutes instead of days, FSRCNN's all-layer fine-tune, 291 images
instead of ImageNet (SRCNN, ESPCN) or DIV2K (BSRN, EBRN, RRDBNet) and bigger batches.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tarfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from pack_training_data import SUBSETS  # the named subsets `--train` packs, e.g. t91

# name -> (architecture, config, loss, lr, batch, lq_patch per scale, colour "y"/"rgb", bf16 + channels-last, weight)
RECIPES = {
    "srresnet": ("srresnet", {}, "mse", 2e-4, 32, {4: 24}, "rgb", True, 0.6),
    "bsrn": ("bsrn", {}, "l1", 1e-3, 64, {4: 48}, "rgb", True, 1.0),
    "ebrn": ("ebrn", {}, "l1", 2e-4, 16, {4: 48}, "rgb", True, 1.0),
    "rrdbnet": ("rrdbnet", {"num_blocks": 23}, "l1", 2e-4, 16, {4: 32}, "rgb", True, 1.4),
    "srcnn": ("srcnn", {"variant": "9-5-5"}, "mse", 5e-4, 128, {2: 24, 3: 16, 4: 12}, "y", False, 1.5),
    "espcn": ("espcn", {}, "mse", 2e-3, 16, {2: 17, 3: 17, 4: 17}, "y", False, 1.0),  # 17r px HR sub-images; 2e-3: README
    "fsrcnn": ("fsrcnn", {}, "mse", 1e-3, 16, {2: 10, 3: 7, 4: 6}, "y", False, 1.0),  # sub-images as in [*]
    "bsrn-s": ("bsrn-s", {}, "l1", 1e-3, 64, {2: 48, 3: 48, 4: 48}, "rgb", True, 1.0),
    "pisr": ("fsrcnn", {}, "l1", 1e-4, 16, {2: 96, 3: 64, 4: 48}, "y", False, 1.0),  # authors: 192 px HR, batch 16
}
# worker -> jobs (recipe, scale, kind); a worker runs its jobs in order
WORKERS = {
    "heavy": [(m, 4, "train") for m in ("srresnet", "bsrn", "ebrn", "rrdbnet")],
    "srcnn-espcn": [(m, s, "train") for m in ("srcnn", "espcn") for s in (2, 3, 4)],
    "fsrcnn": [("fsrcnn", 3, "train"), ("fsrcnn", 2, "transfer"), ("fsrcnn", 4, "transfer")],
    "bsrn-s": [("bsrn-s", s, "train") for s in (2, 3, 4)],
    "pisr": [("pisr", s, "pisr") for s in (2, 3, 4)],
}
FSRCNN_TRANSFER_WEIGHT = 0.5  # share of a from-scratch job the x3 -> x2 / x4 transfer gets
TRANSFER_DECONV_SHARE = 0.4  # of the transfer's time: the deconvolution alone; then every layer at lr / 10
# Learning-rate factors by parameter name prefix. FSRCNN: 10^-3 for the convolutions, 10^-4 for the
# deconvolution, as the paper trains it. [*] Its LR sub-images are tiny (the authors' released x3
# Caffe model takes 7x7 inputs; 10 / 7 / 6 px at x2 / x3 / x4 as yjn870/FSRCNN-pytorch follows the
# paper). Batches of 16 of these, with this split, beat the earlier recipe (batch 128 of 16 px LR
# patches, one rate) on Set5 x3 within 4 epochs of the 91 images on 2 CPU cores (README).
# ESPCN: "the final layer learns 10 times slower" (its section 3.2). Batches of 16 rather than 128
# went on from the shipped espcn-x3 to 32.44 dB on Set5 where 128 stopped at 32.32 (2 CPU cores).
LAYER_LR = {"fsrcnn": {"body.deconvolution.": 0.1}, "espcn": {"conv3.": 0.1}}
# A named subset (pack_training_data.SUBSETS) a recipe trains on: ESPCN trains on Yang et al.'s 91 images alone (its paper's
# 91-image model) where the pack holds them. On 2 CPU cores it read 32.72 dB on Set5 x3 after 30 min on
# them, against 32.50 on the 291 images + photos-43; adding photos-43 to the 91 images cost 0.2 dB (README).
RECIPE_DATA = {"espcn": "t91"}
# FSRCNN's data augmentation (its section 4.1): every image also downscaled by these factors
SCALE_AUGMENTATION = {"fsrcnn": (0.9, 0.8, 0.7, 0.6)}
PISR_SPLIT = (0.25, 0.3, 0.45)  # teacher, student, plain FSRCNN (capped at 1.5x its share to reach the steps)
# --from-shipped: each model starts from the weights srhub ships for its name (so device runs add up),
# with its recipe's learning-rate peak times this (a warm restart of the cosine, not a fresh start)
CONTINUE_LR_FACTOR = 0.3
EMA_DECAY = 0.999
PART_BYTES = 15 * 2**20


def import_srhub(data: Path) -> None:
    """srhub imports pypng at import time; the device image lacks it, so the packed folder carries it."""
    sys.path.insert(0, str(ROOT))
    try:
        import png  # noqa: F401
    except ModuleNotFoundError:
        sys.path.append(str(data / "pylib"))


# ------------------------------------------------------------------ data on the device


def read_images(folder: Path) -> list[tuple[str, torch.Tensor]]:
    """(file name, uint8 RGB tensor) of every training image in ``folder``."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".webp", ".png"))

    def read(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)

    with ThreadPoolExecutor(8) as pool:
        return list(zip((p.name for p in files), pool.map(read, files)))


def make_pool(images, scale: int, lq_patch: int, colour: str, device, *, count: int, max_bytes: float, seed: int):
    """Random aligned (lq, gt) crops of every image, about ``count`` in all, stored on ``device``:
    uint8 RGB, or float32 luma for the Y-channel models."""
    from srhub.color import rgb_to_y
    from srhub.data import mod_crop
    from srhub.degradations import imresize

    channels, item = (1, 4) if colour == "y" else (3, 1)
    per_item = channels * item * lq_patch**2 * (1 + scale**2)
    count = max(1, min(count, int(max_bytes // per_item)))
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for image in images:
        gt = mod_crop(image, scale).to(device)
        if min(gt.shape[-2:]) >= lq_patch * scale:
            pairs.append((imresize(gt, scale=1 / scale), gt))
    if not pairs:
        raise ValueError(f"no training image is larger than {lq_patch * scale} px")
    positions = torch.tensor([(lq.shape[-2] - lq_patch + 1) * (lq.shape[-1] - lq_patch + 1) for lq, _ in pairs], dtype=torch.float64)
    counts = torch.distributions.Multinomial(count, positions / positions.sum()).sample().long().tolist()
    lqs, gts = [], []
    offsets = torch.arange(lq_patch)
    hr_offsets = torch.arange(lq_patch * scale)
    for (lq, gt), n in zip(pairs, counts):
        if n == 0:
            continue
        top = torch.randint(lq.shape[-2] - lq_patch + 1, (n,), generator=generator)
        left = torch.randint(lq.shape[-1] - lq_patch + 1, (n,), generator=generator)
        rows, cols = (top[:, None] + offsets).to(device), (left[:, None] + offsets).to(device)
        lqs.append(lq[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1))
        rows, cols = (top[:, None] * scale + hr_offsets).to(device), (left[:, None] * scale + hr_offsets).to(device)
        gts.append(gt[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1))
    lq, gt = torch.cat(lqs), torch.cat(gts)
    if colour == "y":
        lq = torch.cat([rgb_to_y(chunk.float() / 255) for chunk in lq.split(4096)])
        gt = torch.cat([rgb_to_y(chunk.float() / 255) for chunk in gt.split(4096)])
    return lq, gt


def draw(pool, batch: int, *, channels_last: bool = False):
    """A random batch with per-sample flips and transposes (the 8 dihedral transforms), float in [0, 1]."""
    lq_pool, gt_pool = pool
    index = torch.randint(len(lq_pool), (batch,), device=lq_pool.device)
    lq, gt = lq_pool[index], gt_pool[index]
    if lq.dtype == torch.uint8:
        lq, gt = lq.float() / 255, gt.float() / 255
    flips = torch.rand(3, batch, 1, 1, 1, device=lq.device) < 0.5
    lq = torch.where(flips[0], lq.flip(-1), lq)
    gt = torch.where(flips[0], gt.flip(-1), gt)
    lq = torch.where(flips[1], lq.flip(-2), lq)
    gt = torch.where(flips[1], gt.flip(-2), gt)
    lq = torch.where(flips[2], lq.transpose(-1, -2), lq)
    gt = torch.where(flips[2], gt.transpose(-1, -2), gt)
    if channels_last:
        lq = lq.contiguous(memory_format=torch.channels_last)
    return lq, gt


@torch.no_grad()
def set5_psnr(model, set5: list, scale: int) -> float:
    """Mean Y-PSNR (border = scale) on Set5, in float32, as srhub.benchmark measures it."""
    from srhub.metrics import psnr

    was_training = model.training
    model.eval()
    values = [psnr(model(lq).clamp(0, 1), gt, crop_border=scale) for lq, gt in set5]
    model.train(was_training)
    return sum(values) / len(values)


# ------------------------------------------------------------------ one optimisation run


class EMA:
    """Exponential moving average of the parameters (foreach lerp: one launch per update)."""

    def __init__(self, model, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.source, self.target = list(model.parameters()), list(self.model.parameters())
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.target, self.source, 1 - decay)


def param_groups(model, recipe_name: str, params) -> list[dict]:
    """``params`` as Adam parameter groups, each with the ``lr_scale`` that ``LAYER_LR`` gives its layer."""
    chosen, factors, groups = {id(p) for p in params}, LAYER_LR.get(recipe_name, {}), {}
    for name, param in model.named_parameters():
        if id(param) in chosen:
            factor = next((f for prefix, f in factors.items() if name.startswith(prefix)), 1.0)
            groups.setdefault(factor, []).append(param)
    return [{"params": group, "lr_scale": factor} for factor, group in groups.items()]


def optimise(name, model, params, loss_fn, *, lr, seconds, validate=None, max_steps=None, log, amp=False, checks=9):
    """Adam with a cosine learning rate over ``seconds`` (or ``max_steps``), EMA, Set5 checks.
    ``params`` may be parameter groups with an ``lr_scale`` each (see :func:`param_groups`).

    Returns the history and the best weights (EMA or raw) by Set5 PSNR; without ``validate``
    the last raw weights."""
    device = next(model.parameters()).device
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), fused=fused)
    ema = EMA(model, EMA_DECAY) if validate else None
    curve, best = [], {"psnr": -math.inf, "state": None, "source": None, "step": 0}
    started = time.monotonic()
    checks = [(max_steps or seconds) * (i + 1) / (checks + 1) for i in range(checks)]  # then a final one
    loss_sum, loss_count, step = torch.zeros((), device=device), 0, 0

    def check(final: bool = False) -> None:
        nonlocal loss_sum, loss_count
        elapsed = time.monotonic() - started
        entry = {"step": step, "seconds": round(elapsed, 2), "loss": float(loss_sum) / max(loss_count, 1)}
        loss_sum, loss_count = torch.zeros((), device=device), 0
        if validate:
            for source, net in (("ema", ema.model), ("raw", model)):
                value = validate(net)
                entry[f"set5_{source}"] = round(value, 4)
                if value > best["psnr"]:
                    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    best.update(psnr=value, state=state, source=source, step=step)
        curve.append(entry)
        log(f"{name}: step {step} {elapsed:.0f}s {step / max(elapsed, 1e-9):.1f} it/s loss {entry['loss']:.4g}"
            + (f" Set5 ema {entry['set5_ema']:.2f} raw {entry['set5_raw']:.2f} best {best['psnr']:.2f}" if validate else "")
            + (" (final)" if final else ""))

    model.train()
    while True:
        elapsed = time.monotonic() - started
        progress = step / max_steps if max_steps else elapsed / seconds
        if step > 0 and (progress >= 1 or (max_steps and elapsed >= seconds)):
            break
        warm_up = min(1.0, max(progress, 0.0005) / 0.02)
        factor = warm_up * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor * group.get("lr_scale", 1.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema:
            ema.update()
        loss_sum += loss.detach().float()
        loss_count += 1
        step += 1
        if checks and (step if max_steps else time.monotonic() - started) >= checks[0]:
            checks.pop(0)
            check()
    check(final=True)
    if best["state"] is None:
        best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"steps": step, "seconds": round(time.monotonic() - started, 2), "curve": curve}, best


# ------------------------------------------------------------------ the jobs


def luma_body(model):
    """The single-channel network inside a Y-mode SRCNN / ESPCN / FSRCNN (trained on luma directly)."""
    return model.body if model.architecture == "fsrcnn" else model._body


def recipe_images(recipe_name: str, images: list[tuple[str, torch.Tensor]]) -> tuple[list[torch.Tensor], list[str] | None]:
    """The packed ``(file name, image)`` pairs a recipe trains on (:data:`RECIPE_DATA`), and the name of that
    subset for its record; every image and None where the recipe has no subset or the pack lacks it."""
    subset = RECIPE_DATA.get(recipe_name)
    pattern = SUBSETS[subset][1] if subset else None
    chosen = [image for name, image in images if pattern and fnmatch(Path(name).stem, pattern)]
    return (chosen, [subset]) if chosen else ([image for _, image in images], None)


def criterion(name: str):
    return F.l1_loss if name == "l1" else F.mse_loss


def run_job(recipe_name, scale, kind, *, seconds, device, images, set5s, args, log, done):
    """Train one job; returns {name: (result, model with its best weights)} (PISR gives three)."""
    from srhub.losses import VIDLoss, pisr_teacher_loss
    from srhub.models import MODELS, TEACHERS

    job_started = time.monotonic()
    arch, config, loss_name, lr, batch, patches, colour, amp_cl, _ = RECIPES[recipe_name]
    amp = amp_cl and not args.no_amp  # bf16 autocast (on a CPU too, so smoke runs take the same path)
    channels_last = amp_cl
    if args.smoke:
        batch, patches = 2, {2: 16, 3: 16, 4: 16}  # BSRN's ESA needs >= 16 px
    lq_patch = patches[scale]
    images, train_data = recipe_images(recipe_name, images)
    if train_data:
        log(f"{recipe_name} x{scale}: trains on {train_data[0]} alone ({len(images)} images)")
    factors = SCALE_AUGMENTATION.get(recipe_name, ())
    if factors:
        from srhub.degradations import imresize

        images = images + [imresize(image, scale=f) for f in factors for image in images]
    pool = make_pool(images, scale, lq_patch, colour, device, count=64 if args.smoke else 200_000,
                     max_bytes=3e9 if kind == "train" and scale == 4 and colour == "rgb" else 1.5e9, seed=scale)
    set5 = set5s(scale)
    seconds = max(seconds - (time.monotonic() - job_started), 0.5)  # the pool's making counts (on a CPU: seconds)
    recipe = {"recipe": recipe_name, "architecture": arch, "config": config, "loss": loss_name, "lr": lr,
              "batch_size": batch, "lq_patch": lq_patch, "colour": colour, "bf16": amp, "channels_last": channels_last,
              "kind": kind, "ema_decay": EMA_DECAY, "pool_patches": len(pool[0]), "scale_augmentation": list(factors),
              "layer_lr": LAYER_LR.get(recipe_name, {})} | ({"train_data": train_data} if train_data else {})
    outputs = {}

    if kind in ("train", "transfer"):
        model = MODELS[arch](scale=scale, **config).to(device)
        params = list(model.parameters())
        shipped = ROOT / "srhub" / "weights" / f"{arch}-x{scale}.safetensors"
        if args.features_from_x3 and recipe_name == "espcn" and scale != 3:  # x3's feature layers, a fresh sub-pixel layer
            kind = recipe["kind"] = "features"
            recipe["features_from"] = load_espcn_features(model, done, log)
        elif args.from_shipped and recipe_name == arch and shipped.exists():  # go on from what srhub ships
            from safetensors.torch import load_file

            model.load_state_dict({k: v.float() for k, v in load_file(shipped).items()})  # strict: the same network
            kind = recipe["kind"] = "continue"
            lr = recipe["lr"] = lr * CONTINUE_LR_FACTOR
            recipe["continued_from"] = f"srhub/weights/{shipped.name}"
            log(f"{arch}-x{scale}: continues from {recipe['continued_from']} at lr {lr:g}")
        if kind == "transfer" and f"{arch}-x3" not in done:
            log(f"{arch}-x3 is missing: x{scale} trains from scratch instead of the transfer")
            kind = recipe["kind"] = "train"
        if kind == "transfer":  # FSRCNN's transfer: the x3 network, the deconvolution learns first
            source = done[f"{arch}-x3"][1]
            model.load_state_dict(source.state_dict())
            model.requires_grad_(False)
            model.body.deconvolution.requires_grad_(True)
            params = list(model.body.deconvolution.parameters())
            recipe["transfer_from"] = f"{arch}-x3"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        body = luma_body(model) if colour == "y" else model
        crit = criterion(loss_name)

        def loss_fn():
            lq, gt = draw(pool, batch, channels_last=channels_last)
            return crit(body(lq).float(), gt)

        def validate(net):
            return set5_psnr(net, set5, scale)

        if kind == "transfer":  # the deconvolution alone, then every layer at a tenth of the rate
            history, best = optimise(f"{arch}-x{scale}-deconv", model, param_groups(model, recipe_name, params), loss_fn, lr=lr, seconds=seconds * TRANSFER_DECONV_SHARE,
                                     log=log, checks=args.checks, validate=validate, amp=amp)
            model.load_state_dict(best["state"])
            model.requires_grad_(True)
            tuned, tuned_best = optimise(f"{arch}-x{scale}-all", model, param_groups(model, recipe_name, model.parameters()),
                                         loss_fn, lr=lr / 10,
                                         seconds=seconds * (1 - TRANSFER_DECONV_SHARE), log=log, checks=args.checks,
                                         validate=validate, amp=amp)
            # (its curve joins the run's below, steps and seconds counted on from the first phase)
            recipe["fine_tune_all"] = {"lr": lr / 10, "steps": tuned["steps"], "seconds": tuned["seconds"], **_best(tuned_best)}
            history = {**history, "steps": history["steps"] + tuned["steps"], "seconds": round(history["seconds"] + tuned["seconds"], 2),
                       "curve": history["curve"] + [{**entry, "step": entry["step"] + history["steps"],
                                                     "seconds": round(entry["seconds"] + history["seconds"], 2)} for entry in tuned["curve"]]}
            if tuned_best["psnr"] > best["psnr"]:
                best = {**tuned_best, "step": tuned_best["step"] + history["steps"] - tuned["steps"]}
        else:
            history, best = optimise(f"{arch}-x{scale}", model, param_groups(model, recipe_name, params), loss_fn, lr=lr,
                                     seconds=seconds, log=log, checks=args.checks,
                                     validate=validate, amp=amp)
        model = model.to(memory_format=torch.contiguous_format)
        model.load_state_dict(best["state"])
        outputs[f"{arch}-x{scale}"] = (recipe | history | _best(best), model)
        return outputs

    # PISR: teacher (sees HR), student distilled from it, then a plain FSRCNN with the same steps
    teacher = TEACHERS["pisr-teacher"](scale=scale).to(device)
    l1 = F.l1_loss

    def teacher_loss():
        lq, gt = draw(pool, batch)
        code = teacher.encoder(gt)
        loss, _ = pisr_teacher_loss(teacher.decoder(code), gt, code, lq, imitation_weight=1e-4)
        return loss

    t_hist, _ = optimise(f"pisr-teacher-x{scale}", teacher, list(teacher.parameters()), teacher_loss, lr=1e-3,
                         seconds=seconds * PISR_SPLIT[0], log=log)
    teacher.eval().requires_grad_(False)
    student = teacher.student(initialize=True)
    vid = VIDLoss(channels=teacher.decoder.expanding[0].out_channels).to(device)

    def student_loss():
        lq, gt = draw(pool, batch)
        with torch.no_grad():
            _, target = teacher.decoder(teacher.encoder(gt), return_features=True)
        sr, stages = student.body(lq, return_features=True)
        return l1(sr, gt) + 1e-6 * vid(stages["expanding"], target["expanding"])

    s_hist, best = optimise(f"pisr-x{scale}", student, [*student.parameters(), *vid.parameters()], student_loss,
                            lr=lr, seconds=seconds * PISR_SPLIT[1], log=log, checks=args.checks, validate=lambda net: set5_psnr(net, set5, scale))
    student.load_state_dict(best["state"])
    outputs[f"pisr-x{scale}"] = (recipe | s_hist | _best(best) | {"teacher": t_hist, "teacher_lr": 1e-3}, student)
    outputs[f"pisr-teacher-x{scale}"] = ({"recipe": "pisr-teacher"} | t_hist, teacher)

    plain = MODELS["fsrcnn"](scale=scale).to(device)
    steps = t_hist["steps"] + s_hist["steps"]

    def plain_loss():
        lq, gt = draw(pool, batch)
        return l1(plain.body(lq), gt)

    p_hist, best = optimise(f"fsrcnn-plain-x{scale}", plain, list(plain.parameters()), plain_loss, lr=1e-3,
                            seconds=math.inf if args.smoke else min(seconds * PISR_SPLIT[2] * 1.5, args.deadline - time.time() - 2), max_steps=steps, log=log, checks=args.checks,
                            validate=lambda net: set5_psnr(net, set5, scale))
    plain.load_state_dict(best["state"])
    outputs[f"fsrcnn-plain-x{scale}"] = (recipe | {"lr": 1e-3, "max_steps": steps} | p_hist | _best(best), plain)
    return outputs


def load_espcn_features(model, done: dict, log) -> str:
    """Give an ESPCN x2 / x4 network the x3 network's feature layers (conv1, conv2), leaving its own
    sub-pixel layer (conv3) fresh: the x3 trained earlier in this run, else the one srhub ships.
    Returns where they came from."""
    from safetensors.torch import load_file

    if "espcn-x3" in done:
        source, state = "espcn-x3 (this run)", done["espcn-x3"][1].state_dict()
    else:
        path = ROOT / "srhub" / "weights" / "espcn-x3.safetensors"
        source, state = f"srhub/weights/{path.name}", load_file(path)
    features = {k: v.float() for k, v in state.items() if not k.startswith("conv3.")}
    missing, unexpected = model.load_state_dict(features, strict=False)  # shapes are checked either way
    if unexpected or not missing or any(not k.startswith("conv3.") for k in missing):
        raise RuntimeError(f"{source} does not fit: missing {missing}, unexpected {unexpected}")
    log(f"espcn: conv1 and conv2 from {source}, a fresh conv3")
    return source


def _best(best: dict) -> dict:
    return {"best_set5_psnr": round(best["psnr"], 4) if best["psnr"] > -math.inf else None,
            "best_source": best["source"], "best_step": best["step"]}


def save_model(model, folder: Path, *, half: bool, fallback_config: dict) -> None:
    """An srhub model folder (config.json + model.safetensors) that ``srhub.load`` reads strictly."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    try:
        config = model.config  # the constructor's arguments, recorded by huggingface_hub's mixin
    except Exception:  # an unexpected huggingface_hub: the arguments this script passed
        config = {"architecture": model.architecture, "scale": model.scale, **fallback_config}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def cpu_name() -> str:
    """The CPU's model for a CPU run's record, e.g. "AMD EPYC (family 26, model 2, Zen 5), 2 cores CPU"."""
    from srhub.accel import cpu_description

    return f"{cpu_description()} CPU"


def selected(job: tuple, args) -> bool:
    return (not args.models or job[0] in args.models) and (not args.scales or job[1] in args.scales)


def worker(args) -> int:
    import_srhub(Path(args.data))
    from srhub.data import BenchmarkDataset

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    label = args.label or args.worker
    out = Path(args.out) / "work" / label
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{label} {time.time() - args.started:5.0f}s] {message}", flush=True)

    images = [(name, image.to(device)) for name, image in read_images(Path(args.data) / "train")]
    manifest = Path(args.data) / "manifest.json"  # benchmarks/pack_training_data.py says which folders
    sources = json.loads(manifest.read_text())["train_source"] if manifest.exists() else []
    train_data = [Path(source).name for source in ([sources] if isinstance(sources, str) else sources)]
    cache = {}

    def set5s(scale: int):
        if scale not in cache:
            items = BenchmarkDataset(Path(args.data) / "Set5", scale=scale)
            cache[scale] = [(it.lq[None].to(device), it.gt[None].to(device)) for it in items]
        return cache[scale]

    log(f"{len(images)} training images on {device}")
    jobs = [job for job in WORKERS[args.worker] if selected(job, args)]
    weights = [RECIPES[r][-1] * (FSRCNN_TRANSFER_WEIGHT if k == "transfer" else 1) for r, _, k in jobs]
    results, done = {}, {}
    for index, (recipe_name, scale, kind) in enumerate(jobs):
        remaining = args.deadline - time.time()
        seconds = max(remaining * weights[index] / sum(weights[index:]), 0.5)
        if remaining < 3 and not args.smoke:
            log(f"{recipe_name} x{scale}: no time left, skipped")
            results[f"{recipe_name}-x{scale}"] = {"error": "skipped: the budget ran out"}
            continue
        log(f"{recipe_name} x{scale} ({kind}): {seconds:.0f} s")
        try:
            outputs = run_job(recipe_name, scale, kind, seconds=seconds, device=device, images=images, set5s=set5s,
                              args=args, log=log, done=done)
        except Exception as error:  # one failure must not lose the other models
            log(f"{recipe_name} x{scale} FAILED: {error!r}")
            results[f"{recipe_name}-x{scale}"] = {"error": traceback.format_exc()}
            outputs = {}
        for name, (result, model) in outputs.items():
            done[name] = (result, model)
            half = model.num_parameters() > 1_000_000  # heavy weights travel as float16 (64 MiB limit)
            try:
                save_model(model, out / name, half=half, fallback_config=result.get("config", {}))
            except Exception as error:
                log(f"{name}: saving FAILED: {error!r}")
                result = result | {"error": f"saving failed: {traceback.format_exc()}"}
            results[name] = {"train_data": train_data} | result | {"params": model.num_parameters(), "saved_dtype": "float16" if half else "float32",
                                      "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
                                      "torch": torch.__version__, "worker": label}
            if device.type == "cpu":
                results[name]["threads"] = torch.get_num_threads()
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    log("done")
    return 0


# ------------------------------------------------------------------ the orchestrator


def pack(out: Path, log) -> None:
    """$OUT/work/* -> results.json, log.txt and weights.tar.partN (the device returns <= 8 files)."""
    work = out / "work"
    results = {}
    for path in sorted(work.glob("*/results.json")):
        results.update(json.loads(path.read_text()))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    tar_path = out / "weights.tar"
    with tarfile.open(tar_path, "w") as tar:
        for folder in sorted(p for p in work.glob("*/*") if p.is_dir()):
            tar.add(folder, arcname=folder.name)
    data = tar_path.read_bytes()
    tar_path.unlink()
    for index in range(0, max(len(data), 1), PART_BYTES):
        (out / f"weights.tar.part{index // PART_BYTES}").write_bytes(data[index : index + PART_BYTES])
    logs = [f"===== {p.stem}\n{p.read_text(errors='replace')}" for p in sorted(work.glob("*.log"))]
    (out / "log.txt").write_text("\n".join(logs))
    import shutil

    shutil.rmtree(work)
    log(f"packed {len(results)} models, {len(data) / 2**20:.1f} MiB of weights in {math.ceil(len(data) / PART_BYTES)} parts")


def processes(args) -> dict[str, tuple[str, list[str] | None, list[int] | None]]:
    """{process label: (worker, models, scales)}: each worker with its selected jobs, or with
    ``--parallel-jobs`` one process per light job, so that each gets the whole budget on the GPU
    (heavy models stay one after another; FSRCNN's x3 -> x2/x4 transfer needs its x3 in the same
    process unless ``--from-shipped`` starts every scale from srhub's weights)."""
    plan = {}
    for name, jobs in WORKERS.items():
        chosen = [job for job in jobs if selected(job, args)]
        if not chosen:
            continue
        if not args.parallel_jobs or name == "heavy" or (name == "fsrcnn" and not args.from_shipped):
            plan[name] = (name, args.models, args.scales)
        else:
            plan.update({f"{recipe}-x{scale}": (name, [recipe], [scale]) for recipe, scale, _ in chosen})
    return plan


def orchestrate(args) -> int:
    procs: dict = {}
    try:
        return _orchestrate(args, procs)
    finally:  # never leave a worker behind
        for process, _ in procs.values():
            if process.poll() is None:
                process.kill()


def _orchestrate(args, procs: dict) -> int:
    out = Path(args.out)
    (out / "work").mkdir(parents=True, exist_ok=True)
    reserve = 6 if args.smoke else 25  # packing and process exits
    deadline = args.started + args.budget_seconds - reserve

    def log(message: str) -> None:
        print(f"[main {time.time() - args.started:5.0f}s] {message}", flush=True)

    plan = processes(args)
    names = list(plan)
    log(f"device {args.device}; workers {', '.join(names)}; budget {args.budget_seconds} s")
    # on a GPU the workers run side by side; on a CPU (smoke tests) one after another, each with its share
    concurrent = args.device != "cpu"
    for index, name in enumerate(names):
        own_deadline = deadline if concurrent else args.started + (deadline - args.started) * (index + 1) / len(names)
        if not concurrent and index:
            previous = procs[names[index - 1]][0]
            try:  # smoke runs wait for every worker: a loaded CPU says nothing about the GPU's pace
                previous.wait(timeout=None if args.smoke else max(args.started + (deadline - args.started) * index / len(names) - time.time() + 5, 1))
            except subprocess.TimeoutExpired:
                log(f"{names[index - 1]} over time: stopping it")
                previous.kill()
        worker_name, models, scales = plan[name]
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker_name, "--label", name,
                   "--deadline", str(own_deadline),
                   "--started", str(args.started), "--data", args.data, "--out", str(out), "--device", args.device]
        command += ["--smoke"] * args.smoke + ["--no-amp"] * args.no_amp + ["--checks", str(args.checks)]
        command += ["--from-shipped"] * args.from_shipped + ["--features-from-x3"] * args.features_from_x3
        command += ["--threads", str(args.threads)]
        command += (["--models", *models] if models else []) + (["--scales", *map(str, scales)] if scales else [])
        handle = open(out / "work" / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                        env=os.environ | {"PYTHONUNBUFFERED": "1"}), handle)
    last_report = 0.0
    while any(p.poll() is None for p, _ in procs.values()):
        time.sleep(0.5)
        now = time.time()
        if now > deadline + reserve * 0.5 and not args.smoke:
            for name, (p, _) in procs.items():
                if p.poll() is None:
                    log(f"{name} over time: stopping it")
                    p.kill()
        if now - last_report > (5 if args.smoke else 20):
            last_report = now
            for name in procs:
                lines = (out / "work" / f"{name}.log").read_text(errors="replace").strip().splitlines()
                print(lines[-1] if lines else f"[{name}] (starting)", flush=True)
    codes = {}
    for name, (p, handle) in procs.items():
        codes[name] = p.wait()
        handle.close()
    log(f"workers exited: {codes}")
    pack(out, log)
    results = json.loads((out / "results.json").read_text())
    for name, result in sorted(results.items()):
        figure = result.get("best_set5_psnr")
        log(f"{name:22s} {'FAILED' if 'error' in result else f'{figure} dB' if figure else 'trained'}"
            f" {result.get('steps', '')} steps {result.get('seconds', '')} s")
    return 0 if all(code == 0 for code in codes.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="local/gpu-data", help="folder written by benchmarks/pack_training_data.py")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-zoo"))
    parser.add_argument("--budget-seconds", type=float, default=520, help="wall clock for everything, packing included")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="*", help=f"only these recipes ({', '.join(RECIPES)})")
    parser.add_argument("--smoke", action="store_true", help="tiny batches and patches (CPU tests)")
    parser.add_argument("--no-amp", action="store_true", help="train the heavy models in float32")
    parser.add_argument("--checks", type=int, default=9, help="Set5 checks during each model's run (and one at its end)")
    parser.add_argument("--scales", type=int, nargs="*", help="only these scales (the FSRCNN transfer needs x3)")
    parser.add_argument("--from-shipped", action="store_true",
                        help="start each model from the weights srhub ships for it (srhub/weights/<name>.safetensors), "
                             f"at {CONTINUE_LR_FACTOR:g} x its learning rate; PISR and unshipped models start from scratch")
    parser.add_argument("--features-from-x3", action="store_true",
                        help="ESPCN x2 / x4 start from the x3 network's conv1 and conv2 (this run's x3, else the shipped "
                             "one) with a fresh sub-pixel layer, at the full learning rate")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads per worker (1: two runs side by side on 2 cores, each on its own core)")
    parser.add_argument("--parallel-jobs", action="store_true",
                        help="one process per light job (on a GPU each gets the whole budget instead of a share)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, default=time.time(), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}")
    unknown = set(args.models or ()) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}; known: {', '.join(RECIPES)}")
    return worker(args) if args.worker else orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
