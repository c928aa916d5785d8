"""Real-ESRGAN: Real-ESRNet (L1) pre-training, then GAN training with the U-Net SN discriminator,
on LR images made by the second-order degradation pipeline on the fly.

    accelerate launch train/realesrgan.py --output-dir runs/realesrgan-x4 --vgg-weights vgg19.safetensors
    accelerate launch train/realesrgan.py --pretrained runs/realesrnet/model ...   # skip Real-ESRNet

The settings are Real-ESRGAN's published x4plus ones (Wang et al., ICCVW 2021; the
authors' train_realesrnet_x4plus.yml and train_realesrgan_x4plus.yml):

* degradations (``srhub.degradations.realesrgan_degrade``): blur with iso/aniso/generalized/
  plateau Gaussian or sinc kernels, random resize, Gaussian or Poisson noise, JPEG, twice,
  then resize and a final sinc filter in random order with the last JPEG; every draw from a
  ``torch.Generator`` seeded by (seed, step, micro-batch, process), so runs are repeatable;
* targets for the pixel and perceptual losses are unsharp-masked (USM) HR patches; the
  discriminator sees the plain HR;
* Real-ESRNet: L1, lr 2e-4, 1M steps; Real-ESRGAN: 1.0 L1 + 1.0 perceptual (VGG19 conv1_2,
  conv2_2 at 0.1, conv3_4, conv4_4, conv5_4 at 1.0, before ReLU, L1) + 0.1 standard GAN
  loss on the U-Net discriminator's per-pixel logits, lr 1e-4, 400k steps; HR patches 256;
  EMA 0.999 saved.

Not reproduced: the reference's 400 px crop before degradation followed by a 256 px crop,
and its training-pair pool (a queue that mixes degradations across batches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from accelerate.utils import set_seed
from torch.nn import functional as F

from srhub.degradations import realesrgan_degrade, usm_sharp
from srhub.losses import PerceptualLoss, generator_adversarial_loss
from srhub.models import DISCRIMINATORS, MODELS
from srhub.training import (
    EMA,
    Progress,
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

PERCEPTUAL_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


@dataclass
class Config(TrainConfig):
    """Real-ESRGAN training (srhub.training.TrainConfig has the shared settings)."""

    output_dir: str = "runs/realesrgan"
    model: str = "rrdbnet"  # any srhub generator; Real-ESRGAN x4plus is RRDBNet, the anime video model SRVGGNetCompact
    model_config: dict = field(default_factory=dict)  # generator constructor overrides, e.g. '{"num_blocks": 6}'
    discriminator: str = "unet-discriminator-sn"  # a srhub discriminator name
    discriminator_config: dict = field(default_factory=dict)  # discriminator constructor overrides
    pretrained: str | None = None  # generator folder (e.g. a Real-ESRNet run's output_dir/model); skips pre-training
    pretrain_steps: int = 1_000_000  # Real-ESRNet steps
    steps: int = 400_000  # Real-ESRGAN steps
    batch_size: int = 12  # per GPU; the authors used 4 GPUs
    hr_patch: int = 256  # HR patch side
    pretrain_lr: float = 2e-4  # Real-ESRNet learning rate
    lr: float = 1e-4  # Real-ESRGAN learning rate of both networks
    pixel_weight: float = 1.0  # GAN-phase weight of the L1 loss
    perceptual_weight: float = 1.0  # weight of the VGG19 perceptual loss
    gan_weight: float = 0.1  # weight of the adversarial loss
    vgg_weights: str | None = None  # VGG19 weights: safetensors or torchvision .pth (see srhub/losses.py)
    perceptual: bool = True  # --no-perceptual: train without the perceptual term (only when asked)


def degraded_batch(gt: torch.Tensor, cfg: Config, step: int, micro: int, process: int) -> torch.Tensor:
    """The LR batch for ``gt``: a fresh generator per (seed, step, micro-batch, process)."""
    generator = torch.Generator().manual_seed(hash((cfg.seed, step, micro, process)) % 2**63)
    return realesrgan_degrade(gt, scale=cfg.scale, generator=generator)


def main(cfg: Config) -> dict:
    pretrain = 0 if cfg.pretrained else cfg.pretrain_steps
    total = pretrain + cfg.steps
    perceptual = None if not cfg.perceptual else PerceptualLoss(  # fails early, with the fix, if VGG19 is missing
        layer_weights=PERCEPTUAL_LAYERS, weights=cfg.vgg_weights, criterion="l1"
    )
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)

    loader = patch_loader(cfg, accelerator, patch_size=cfg.hr_patch, with_lq=False, steps=total)
    generator = MODELS[cfg.model](scale=cfg.scale, **cfg.model_config)
    if cfg.pretrained:
        generator.load_state_dict(type(generator).from_pretrained(cfg.pretrained).state_dict())
    discriminator = DISCRIMINATORS[cfg.discriminator](**cfg.discriminator_config)
    ema = EMA(generator, decay=cfg.ema_decay)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    factor = cfg.pretrain_lr / cfg.lr
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda step: factor if step < pretrain else 1.0)

    generator, discriminator, opt_g, opt_d, loader, sched_g = accelerator.prepare(
        generator, discriminator, opt_g, opt_d, loader, sched_g
    )
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)
    if resume(accelerator, cfg, state):  # this run's --lr and --pretrain-lr, not the checkpoint's
        keep_configured_schedule(sched_g, lr=cfg.lr, total_steps=total, step=state.step)
        for group in opt_d.param_groups:
            group["lr"] = cfg.lr
    ema.model.to(accelerator.device)
    if perceptual is not None:
        perceptual.to(accelerator.device)
    accelerator.init_trackers(f"realesrgan-x{cfg.scale}", config=tracker_config(cfg))
    describe_run(accelerator, cfg, loader, script="train/realesrgan.py", steps=total, start_step=state.step,
                 model=ema.model)

    history: dict[str, list[float]] = {"pretrain": [], "generator": [], "discriminator": []}
    progress, validated = Progress(accelerator, cfg, total=total, start=state.step), None
    micro = 0
    generator.train(), discriminator.train()
    for batch in accelerator.skip_first_batches(loader, state.step * cfg.gradient_accumulation_steps):
        if state.step >= total:
            break
        gan_phase = state.step >= pretrain
        gt = batch["gt"]
        lq = degraded_batch(gt, cfg, state.step, micro, accelerator.process_index)
        gt_usm = usm_sharp(gt)
        micro += 1
        with accelerator.accumulate(generator, discriminator), accelerator.autocast():
            sr = generator(lq)
            losses = {"pixel": (cfg.pixel_weight if gan_phase else 1.0) * F.l1_loss(sr, gt_usm)}
            if gan_phase:
                if perceptual is not None:
                    losses["perceptual"] = cfg.perceptual_weight * perceptual(sr, gt_usm)
                plain_d = accelerator.unwrap_model(discriminator)
                losses["gan"] = cfg.gan_weight * generator_adversarial_loss(plain_d, gt, sr, relativistic=False)
            g_loss = sum(losses.values())
            accelerator.backward(g_loss)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            if gan_phase:
                d_loss = discriminator_step(accelerator, discriminator, gt, sr, relativistic=False)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        micro = 0
        sched_g.step()
        state.step += 1
        ema.update(accelerator.unwrap_model(generator))
        if state.step == pretrain:  # GAN training starts from Real-ESRNet's weights, not their average
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

    metrics = finish(accelerator, cfg, ema.model, recipe="train/realesrgan.py (Real-ESRGAN)", step=state.step,
                     validated=validated, progress=progress)
    return {"step": state.step, "losses": history, "metrics": metrics}


if __name__ == "__main__":
    main(parse_config(Config))
