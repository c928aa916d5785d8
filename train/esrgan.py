"""ESRGAN (RRDBNet) and, with ``--model srresnet``, SRGAN: PSNR pre-training, then GAN fine-tuning.

    accelerate launch train/esrgan.py --output-dir runs/esrgan-x4 --vgg-weights vgg19.safetensors
    accelerate launch train/esrgan.py --model srresnet --output-dir runs/srgan-x4 --vgg-weights vgg19.safetensors
    accelerate launch train/esrgan.py --pretrained runs/psnr-rrdbnet/model ...   # skip pre-training

The first ``--pretrain-steps`` optimizer steps train the generator with the pixel loss only
(ESRGAN: L1 at 2e-4; SRGAN: MSE at 1e-4); the next ``--steps`` add the discriminator and
the perceptual loss with the papers' weights:

* ESRGAN (Wang et al., 2018): 0.01 L1 + 1.0 L1 on VGG19 ``conv5_4`` features *before* the
  ReLU + 0.005 relativistic average GAN loss; VGG-style discriminator on 128 px patches;
  lr 1e-4 for both, halved at 1/5, 2/5, 3/5, 4/5 of the steps.
* SRGAN (Ledig et al., 2017): MSE on VGG19 ``relu5_4`` features x 0.006 (the paper's
  rescaling by 1/12.75^2) + 1e-3 standard GAN loss; its discriminator on 96 px patches; lr 1e-4.

The perceptual loss needs ImageNet VGG19 weights (see srhub/losses.py); without them the
script stops, unless ``--no-perceptual`` asks to train without that term.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from accelerate.utils import set_seed
from torch.nn import functional as F

from srhub.losses import PerceptualLoss, generator_adversarial_loss
from srhub.models import DISCRIMINATORS, MODELS
from srhub.training import (
    EMA,
    Progress,
    LRSchedule,
    TrainConfig,
    TrainState,
    describe_run,
    discriminator_step,
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

RECIPES = {
    "rrdbnet": dict(  # ESRGAN
        discriminator="esrgan-discriminator", hr_patch=128, pixel_loss="l1", pretrain_lr=2e-4, lr=1e-4,
        pixel_weight=0.01, perceptual_layers={"conv5_4": 1.0}, perceptual_criterion="l1", perceptual_weight=1.0,
        relativistic=True, gan_weight=0.005,
    ),
    "srresnet": dict(  # SRGAN
        discriminator="srgan-discriminator", hr_patch=96, pixel_loss="mse", pretrain_lr=1e-4, lr=1e-4,
        pixel_weight=0.0, perceptual_layers={"relu5_4": 1.0}, perceptual_criterion="mse", perceptual_weight=0.006,
        relativistic=False, gan_weight=1e-3,
    ),
}


@dataclass
class Config(TrainConfig):
    """ESRGAN / SRGAN training (srhub.training.TrainConfig has the shared settings)."""

    output_dir: str = "runs/esrgan"
    model: str = "rrdbnet"  # "rrdbnet" (ESRGAN) or "srresnet" (SRGAN)
    model_config: dict = field(default_factory=dict)  # generator constructor overrides, e.g. '{"num_blocks": 16}'
    discriminator: str | None = None  # a srhub discriminator name; None: the recipe's
    discriminator_config: dict = field(default_factory=dict)  # discriminator constructor overrides
    pretrained: str | None = None  # generator folder (e.g. from train/psnr.py); skips pre-training
    pretrain_steps: int = 1_000_000  # pixel-loss steps before GAN training (ESRGAN: 1M; SRGAN: 1M)
    steps: int = 400_000  # GAN steps (ESRGAN: 400k; SRGAN: 200k)
    hr_patch: int | None = None  # HR patch side; None: the recipe's (ESRGAN 128, SRGAN 96)
    lr: float | None = None  # GAN-phase learning rate of both networks; None: the recipe's
    pretrain_lr: float | None = None  # pre-training learning rate; None: the recipe's
    pixel_weight: float | None = None  # GAN-phase weight of the pixel loss; None: the recipe's
    perceptual_weight: float | None = None  # weight of the VGG19 perceptual loss; None: the recipe's
    gan_weight: float | None = None  # weight of the adversarial loss; None: the recipe's
    vgg_weights: str | None = None  # VGG19 weights: safetensors or torchvision .pth (see srhub/losses.py)
    perceptual: bool = True  # --no-perceptual: train without the perceptual term (only when asked)


def main(cfg: Config) -> dict:
    if cfg.model not in RECIPES:
        raise ValueError(f"train/esrgan.py trains {', '.join(RECIPES)}, not {cfg.model!r}")
    recipe = RECIPES[cfg.model]
    cfg = dataclasses.replace(cfg, **{k: recipe[k] for k in recipe if hasattr(cfg, k) and getattr(cfg, k) is None})
    pretrain = 0 if cfg.pretrained else cfg.pretrain_steps
    total = pretrain + cfg.steps
    perceptual = None if not cfg.perceptual else PerceptualLoss(  # fails early, with the fix, if VGG19 is missing
        layer_weights=recipe["perceptual_layers"], weights=cfg.vgg_weights, criterion=recipe["perceptual_criterion"]
    )
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)

    loader = patch_loader(cfg, accelerator, patch_size=cfg.hr_patch, steps=total)
    generator = MODELS[cfg.model](scale=cfg.scale, **cfg.model_config)
    if cfg.pretrained:
        generator.load_state_dict(type(generator).from_pretrained(cfg.pretrained).state_dict())
    discriminator = DISCRIMINATORS[cfg.discriminator](**cfg.discriminator_config)
    ema = EMA(generator, decay=cfg.ema_decay)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    gan_schedule = LRSchedule("step", cfg.steps)
    pretrain_factor = cfg.pretrain_lr / cfg.lr
    sched_g = torch.optim.lr_scheduler.LambdaLR(
        opt_g, lambda step: pretrain_factor if step < pretrain else gan_schedule(step - pretrain)
    )
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, gan_schedule)  # stepped in the GAN phase only
    pixel_loss = F.l1_loss if recipe["pixel_loss"] == "l1" else F.mse_loss

    generator, discriminator, opt_g, opt_d, loader, sched_g, sched_d = accelerator.prepare(
        generator, discriminator, opt_g, opt_d, loader, sched_g, sched_d
    )
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)
    if resume(accelerator, cfg, state):  # this run's --lr and --steps, not the checkpoint's
        keep_configured_schedule(sched_d, lr=cfg.lr, total_steps=cfg.steps, step=max(state.step - pretrain, 0))
        keep_configured_schedule(sched_g, lr=cfg.lr, total_steps=cfg.steps, step=state.step)
    ema.model.to(accelerator.device)
    if perceptual is not None:
        perceptual.to(accelerator.device)
    accelerator.init_trackers(f"{'esrgan' if cfg.model == 'rrdbnet' else 'srgan'}-x{cfg.scale}", config=tracker_config(cfg))
    describe_run(accelerator, cfg, loader, script=f"train/esrgan.py --model {cfg.model}", steps=total,
                 start_step=state.step, model=ema.model)

    history: dict[str, list[float]] = {"pretrain": [], "generator": [], "discriminator": []}
    progress, validated = Progress(accelerator, cfg, total=total, start=state.step), None
    generator.train(), discriminator.train()
    for batch in accelerator.skip_first_batches(loader, state.step * cfg.gradient_accumulation_steps):
        if state.step >= total:
            break
        gan_phase = state.step >= pretrain
        lq, gt = batch["lq"], batch["gt"]
        with accelerator.accumulate(generator, discriminator), accelerator.autocast():
            sr = generator(lq)
            if not gan_phase:
                losses = {"pixel": pixel_loss(sr, gt)}
            else:
                losses = {"pixel": cfg.pixel_weight * pixel_loss(sr, gt)}
                if perceptual is not None:
                    losses["perceptual"] = cfg.perceptual_weight * perceptual(sr, gt)
                plain_d = accelerator.unwrap_model(discriminator)
                losses["gan"] = cfg.gan_weight * generator_adversarial_loss(
                    plain_d, gt, sr, relativistic=recipe["relativistic"]
                )
            g_loss = sum(losses.values())
            accelerator.backward(g_loss)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            if gan_phase:
                d_loss = discriminator_step(accelerator, discriminator, gt, sr, relativistic=recipe["relativistic"])
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        sched_g.step()
        if gan_phase:
            sched_d.step()
        state.step += 1
        ema.update(accelerator.unwrap_model(generator))
        if state.step == pretrain:  # GAN training starts from the pre-trained weights, not their average
            ema.reset(accelerator.unwrap_model(generator))
        history["generator" if gan_phase else "pretrain"].append(g_loss.item())
        logged = losses | {"generator": g_loss}
        if gan_phase:
            history["discriminator"].append(d_loss.item())
            logged["discriminator"] = d_loss
        progress.update(state.step, logged, lr=sched_g.get_last_lr()[0])
        if due(state.step, cfg.val_every) and state.step < total:
            validated = {"step": state.step, "metrics": validate_and_log(accelerator, cfg, ema.model, state.step, progress)}
        if due(state.step, cfg.checkpoint_every):
            save_checkpoint(accelerator, cfg.output_dir, state.step, keep=cfg.keep_checkpoints)

    name = "ESRGAN" if cfg.model == "rrdbnet" else "SRGAN"
    metrics = finish(accelerator, cfg, ema.model, recipe=f"train/esrgan.py --model {cfg.model} ({name})", step=state.step,
                     validated=validated, progress=progress)
    return {"step": state.step, "losses": history, "metrics": metrics}


if __name__ == "__main__":
    main(parse_config(Config))
