"""PSNR-oriented training (pixel loss only) for SRCNN, FSRCNN, ESPCN, SRResNet, EBRN, BSRN and RRDBNet.

    python train/psnr.py --model espcn --scale 4 --steps 20000 --output-dir runs/espcn-x4
    accelerate launch --multi_gpu --num_processes 2 train/psnr.py --model espcn ...   # DDP: GPUs, or gloo on a CPU
    python train/psnr.py --model rrdbnet --config my.yaml          # YAML/TOML overrides the defaults
    python train/psnr.py --model fsrcnn --scale 2 --init-from runs/fsrcnn-x3/model   # fine-tune (x3 -> x2)

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

import srhub
from srhub.models import MODELS
from srhub.training import (
    EMA,
    LRSchedule,
    Progress,
    TrainConfig,
    TrainState,
    describe_run,
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


# Layers tied to the scale, left at their initialisation when --init-from comes from another scale
# (FSRCNN's transfer: the paper fine-tunes only the deconvolution from x3 to x2 and x4).
SCALE_SPECIFIC = {"srcnn": (), "fsrcnn": ("deconvolution.",), "espcn": ("conv3.",)}


@dataclass
class Config(TrainConfig):
    """PSNR-oriented training of one srhub generator (srhub.training.TrainConfig has the shared settings)."""

    output_dir: str = "runs/psnr"
    model: str = "espcn"  # one of RECIPES
    model_config: dict = field(default_factory=dict)  # constructor overrides, e.g. '{"num_features": 32}'
    init_from: str | None = None  # fine-tune from a pretrained name or model folder (other scale: all but the upsampler)
    loss: str | None = None  # "l1" or "mse"; None: the recipe's
    lr: float | None = None  # peak learning rate; None: the recipe's
    lq_patch: int | None = None  # LR patch side; the HR patch is scale times larger
    batch_size: int | None = None  # per process and micro-step; None: the recipe's
    lr_schedule: str | None = None  # "constant", "cosine" or "step"; None: the recipe's
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


def init_from(model: torch.nn.Module, source: str) -> str:
    """Copy the weights of ``source`` (a pretrained name or model folder) into ``model``:
    all of them, strictly, at the same scale; all but ``SCALE_SPECIFIC`` layers from another."""
    trained = srhub.load(source)
    weights, expected = trained.state_dict(), model.state_dict()
    skipped: tuple[str, ...] = ()
    if trained.scale != model.scale:
        if model.architecture not in SCALE_SPECIFIC:
            raise ValueError(f"--init-from across scales is defined for {', '.join(SCALE_SPECIFIC)}, not {model.architecture}")
        skipped = SCALE_SPECIFIC[model.architecture]
    wanted = {k for k in expected if not k.startswith(skipped)}
    mismatched = sorted(k for k in wanted if k not in weights or weights[k].shape != expected[k].shape)
    if type(trained) is not type(model) or mismatched:
        raise ValueError(f"--init-from {source} ({type(trained).__name__} x{trained.scale}) does not fit "
                         f"{type(model).__name__} x{model.scale}: {mismatched[:5] or 'another architecture'}")
    model.load_state_dict({k: weights[k] for k in wanted} | {k: expected[k] for k in expected if k not in wanted})
    kept = f", {', '.join(skipped)} left at initialisation for x{model.scale}" if skipped else ""
    return f"initialised from {source} (x{trained.scale}){kept}"


def main(cfg: Config) -> dict:
    cfg = resolve(cfg)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)

    loader = patch_loader(cfg, accelerator, patch_size=cfg.lq_patch * cfg.scale)
    model = MODELS[cfg.model](scale=cfg.scale, **cfg.model_config)
    if cfg.init_from:
        accelerator.print(init_from(model, cfg.init_from), flush=True)
    ema = EMA(model, decay=cfg.ema_decay)  # before the layout change: the average is saved as it is
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(cfg.lr_schedule, cfg.steps))
    criterion = F.l1_loss if cfg.loss == "l1" else F.mse_loss

    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)
    if resume(accelerator, cfg, state):
        keep_configured_schedule(scheduler, lr=cfg.lr, total_steps=cfg.steps, step=state.step)
    ema.model.to(accelerator.device)
    accelerator.init_trackers(f"psnr-{cfg.model}-x{cfg.scale}", config=tracker_config(cfg))
    describe_run(accelerator, cfg, loader, script=f"train/psnr.py --model {cfg.model}", steps=cfg.steps,
                 start_step=state.step, model=ema.model)

    losses, started, reached, validated = [], time.perf_counter(), None, None
    progress = Progress(accelerator, cfg, total=cfg.steps, start=state.step)
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
        progress.update(state.step, {"loss": loss}, lr=scheduler.get_last_lr()[0])
        if due(state.step, cfg.val_every) and state.step < cfg.steps:
            metrics = validate_and_log(accelerator, cfg, ema.model, state.step, progress)
            validated = {"step": state.step, "metrics": metrics}
            first = next(iter(metrics.values())) if metrics else None
            if cfg.target_psnr is not None and first and first["psnr"] >= cfg.target_psnr:
                reached = time.perf_counter() - started
                progress.write(f"reached {cfg.target_psnr} dB at step {state.step} after {reached:.0f} s")
                accelerator.set_trigger()  # validation runs on the main process; stop every process
            if accelerator.check_trigger():
                break  # finish() knows this step is validated already
        if due(state.step, cfg.checkpoint_every):
            save_checkpoint(accelerator, cfg.output_dir, state.step, keep=cfg.keep_checkpoints)

    metrics = finish(accelerator, cfg, ema.model, recipe=f"train/psnr.py --model {cfg.model}", step=state.step,
                     validated=validated, progress=progress)
    return {"step": state.step, "losses": losses, "metrics": metrics, "seconds_to_target": reached,
            "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    main(parse_config(Config))
