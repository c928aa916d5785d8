"""PSNR-oriented training (pixel loss only) for SRCNN, FSRCNN, ESPCN, SRResNet, EBRN, BSRN and RRDBNet.

    accelerate launch train/psnr.py --model espcn --scale 4 --steps 20000 --output-dir runs/espcn-x4
    python train/psnr.py --model rrdbnet --config my.yaml          # YAML/TOML overrides the defaults

Each model gets its paper's loss, learning rate, patch size and schedule from ``RECIPES``
(any flag given overrides it). HR patches are cut at random from ``--train-data``, flipped
and rotated; the LR input is MATLAB-bicubic downscaled on the fly. Every ``--val-every``
steps the EMA weights are measured on Set5 (PSNR/SSIM on Y); ``--target-psnr`` stops the
run as soon as they reach a value (how the README's ESPCN timing was measured).
Interrupted runs continue from the newest complete checkpoint in ``--output-dir``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from accelerate.utils import set_seed
from torch.nn import functional as F

from srhub.models import MODELS
from srhub.training import (
    EMA,
    LRSchedule,
    TrainConfig,
    TrainState,
    due,
    finish,
    keep_configured_schedule,
    make_accelerator,
    parse_config,
    patch_loader,
    resume,
    save_checkpoint,
    tracker_config,
    validate_and_log,
)

# Per-model settings from each paper (Adam replaces the SGD of SRCNN/FSRCNN/ESPCN; lq_patch is in LR pixels).
RECIPES = {
    "srcnn": dict(loss="mse", lr=1e-4, lq_patch=8, batch_size=16, lr_schedule="constant"),
    "fsrcnn": dict(loss="mse", lr=1e-3, lq_patch=10, batch_size=16, lr_schedule="cosine"),
    "espcn": dict(loss="mse", lr=1e-3, lq_patch=17, batch_size=16, lr_schedule="cosine"),
    "srresnet": dict(loss="mse", lr=1e-4, lq_patch=24, batch_size=16, lr_schedule="constant"),
    "ebrn": dict(loss="l1", lr=1e-4, lq_patch=48, batch_size=16, lr_schedule="step"),
    "bsrn": dict(loss="l1", lr=1e-3, lq_patch=48, batch_size=64, lr_schedule="cosine"),
    "bsrn-s": dict(loss="l1", lr=1e-3, lq_patch=48, batch_size=64, lr_schedule="cosine"),
    "rrdbnet": dict(loss="l1", lr=2e-4, lq_patch=32, batch_size=16, lr_schedule="step"),
}


@dataclass
class Config(TrainConfig):
    """PSNR-oriented training of one srhub generator (srhub.training.TrainConfig has the shared settings)."""

    output_dir: str = "runs/psnr"
    model: str = "espcn"  # one of RECIPES
    model_config: dict = field(default_factory=dict)  # constructor overrides, e.g. '{"num_features": 32}'
    loss: str | None = None  # "l1" or "mse"; None: the recipe's
    lr: float | None = None
    lq_patch: int | None = None  # LR patch side; the HR patch is scale times larger
    batch_size: int | None = None
    lr_schedule: str | None = None  # "constant", "cosine" or "step"
    target_psnr: float | None = None  # stop once validation PSNR reaches this (dB)
    channels_last: bool = False  # NHWC weights: 1.6x faster EBRN steps under bf16 autocast on a CPU


def resolve(cfg: Config) -> Config:
    """Fill every None setting from the model's recipe."""
    if cfg.model not in RECIPES:
        raise ValueError(f"train/psnr.py has no recipe for {cfg.model!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[cfg.model]
    cfg = dataclasses.replace(cfg, **{k: v for k, v in recipe.items() if getattr(cfg, k) is None})
    if cfg.loss not in ("l1", "mse"):
        raise ValueError(f"loss must be 'l1' or 'mse', got {cfg.loss!r}")
    return cfg


def main(cfg: Config) -> dict:
    cfg = resolve(cfg)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)

    loader = patch_loader(cfg, accelerator, patch_size=cfg.lq_patch * cfg.scale)
    model = MODELS[cfg.model](scale=cfg.scale, **cfg.model_config)
    ema = EMA(model, decay=cfg.ema_decay)  # before the layout change: the average is saved as it is
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(cfg.lr_schedule, cfg.steps))
    criterion = F.l1_loss if cfg.loss == "l1" else F.mse_loss

    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)
    if cfg.resume and resume(accelerator, cfg.output_dir, state):
        keep_configured_schedule(scheduler, lr=cfg.lr, total_steps=cfg.steps, step=state.step)
    ema.model.to(accelerator.device)
    accelerator.init_trackers(f"psnr-{cfg.model}-x{cfg.scale}", config=tracker_config(cfg))

    losses, started, reached = [], time.perf_counter(), None
    model.train()
    for batch in accelerator.skip_first_batches(loader, state.step * cfg.gradient_accumulation_steps):
        if state.step >= cfg.steps:
            break
        with accelerator.accumulate(model):
            loss = criterion(model(batch["lq"]), batch["gt"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.step += 1
        ema.update(accelerator.unwrap_model(model))
        losses.append(loss.item())
        if due(state.step, cfg.log_every):
            accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=state.step)
        if due(state.step, cfg.val_every) and state.step < cfg.steps:
            metrics = validate_and_log(accelerator, cfg, ema.model, state.step)
            if cfg.target_psnr is not None and metrics and metrics["psnr"] >= cfg.target_psnr:
                reached = time.perf_counter() - started
                accelerator.print(f"reached {cfg.target_psnr} dB at step {state.step} after {reached:.0f} s")
                accelerator.set_trigger()  # validation runs on the main process; stop every process
            if accelerator.check_trigger():
                break
        if due(state.step, cfg.checkpoint_every):
            save_checkpoint(accelerator, cfg.output_dir, state.step, keep=cfg.keep_checkpoints)

    metrics = finish(accelerator, cfg, ema.model, recipe=f"train/psnr.py --model {cfg.model}", step=state.step)
    return {"step": state.step, "losses": losses, "metrics": metrics, "seconds_to_target": reached,
            "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    main(parse_config(Config))
