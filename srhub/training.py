"""The pieces every ``train/*.py`` script shares, kept here so they are written and tested once.

* :func:`parse_config`: CLI flags generated from a config dataclass, with an optional
  ``--config file.yaml|toml`` (precedence: dataclass defaults < file < flags).
* :class:`EMA`: an exponential moving average of a model's weights (the weights we save).
* :class:`TrainState`: the step counter, checkpointed with the rest.
* :func:`save_checkpoint` / :func:`latest_checkpoint`: ``accelerator.save_state`` into a
  hidden temporary folder, renamed into place only once complete, so a run killed while
  saving never leaves a checkpoint that resume would pick up and fail to load.
* :func:`validate`: PSNR/SSIM (Y channel, ``scale`` pixels border) on a benchmark folder.
* :func:`save_model`: ``save_pretrained`` (and optionally ``push_to_hub``) with a model card
  that records the data, the recipe, the steps and the validation metrics.

Checkpoints are Accelerate's format, which pickles optimizer and RNG states: resume only
from checkpoints you wrote yourself. The released model is plain safetensors.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import re
import shutil
import tomllib
import types
import typing
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "srhub_checkpoint.json"


# --------------------------------------------------------------------------------------
# configuration: dataclass -> CLI flags, optional YAML/TOML file
# --------------------------------------------------------------------------------------


def _field_kind(annotation: Any) -> tuple[type, bool, bool]:
    """``(element type, is_sequence, is_optional)`` for a config field's type hint."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"config fields must have one type (optionally | None), got {annotation}")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        element = typing.get_args(annotation)[0]
        return element, True, optional
    if origin is dict:
        return dict, False, optional
    return annotation, False, optional


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check and convert one value read from a config file (ints may stand for floats)."""
    element, sequence, optional = _field_kind(annotation)
    if value is None and optional:
        return None
    if sequence:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {name!r} must be a list, got {value!r}")
        return tuple(_coerce(name, v, element) for v in value)
    if element is dict and isinstance(value, str):
        value = _json_dict(value)
    if element is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, element) or (element is int and isinstance(value, bool)):
        raise ValueError(f"config key {name!r} must be {element.__name__}, got {value!r}")
    return value


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"expected a JSON object such as '{{\"num_features\": 16}}', got {text!r}") from error
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text!r}")
    return value


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a flat ``key: value`` mapping from a ``.yaml``/``.yml`` or ``.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.suffix == ".toml":
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:  # pragma: no cover - PyYAML ships with accelerate
            raise ImportError("reading YAML configs needs PyYAML: pip install pyyaml") from error
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    else:
        raise ValueError(f"config file must end in .yaml, .yml or .toml, got {path.name}")
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Build ``config_cls`` from ``values``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {', '.join(sorted(names))}")
    return config_cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def parse_config(config_cls: type, argv: list[str] | None = None) -> Any:
    """Parse ``argv`` into ``config_cls``: one ``--flag`` per field, plus ``--config FILE``.

    Field comments are not available at run time, so the help shows each default;
    the dataclass docstring is the description.
    """
    hints = typing.get_type_hints(config_cls)
    parser = argparse.ArgumentParser(description=(config_cls.__doc__ or "").strip())
    parser.add_argument("--config", help="YAML or TOML file overriding the defaults (flags override it)")
    for field in dataclasses.fields(config_cls):
        element, sequence, optional = _field_kind(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"default: {default!r}"
        if element is bool and not sequence:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=_json_dict if element is dict else element,
                nargs="+" if sequence else None,
                default=argparse.SUPPRESS,
                help=help_text + (" (none: leave unset)" if optional else ""),
            )
    args = vars(parser.parse_args(argv))
    values = load_config_file(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    return config_from_dict(config_cls, values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def tracker_config(cfg: Any) -> dict[str, Any]:
    """The config flattened to what tensorboard's hparams accept (numbers, strings, bools)."""
    return {
        k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
        for k, v in dataclasses.asdict(cfg).items()
    }


# --------------------------------------------------------------------------------------
# what every script's config and setup share
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    """Settings shared by every training script (each script's config extends this)."""

    output_dir: str = "runs/train"  # checkpoints, tensorboard logs and the final model (output_dir/model)
    train_data: str = "../shared/datasets/photos-43"  # image folder, or hf://datasets/<repo_id>
    val_data: str = "Set5"  # benchmark name or folder for PSNR/SSIM during training
    val_every: int = 1000  # optimizer steps between validations (0: only at the end)
    val_max_images: int | None = None
    scale: int = 4
    steps: int = 100_000  # optimizer steps in total
    batch_size: int = 16  # per process and micro-step
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str = "no"  # "no", "fp16" or "bf16"
    cpu: bool = False  # force the CPU even where an accelerator is present
    num_workers: int = 2
    ema_decay: float = 0.999
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest complete checkpoint in output_dir, if any
    log_every: int = 100
    log_with: str = "tensorboard"  # an Accelerate tracker name, or "none"
    push_to_hub: bool = False
    hub_repo_id: str | None = None


def make_accelerator(cfg: TrainConfig):
    """The ``Accelerator`` every script uses: schedulers are stepped by hand once per optimizer
    step, so a schedule means the same thing on one process or eight."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {cfg.mixed_precision!r}")
    return Accelerator(
        cpu=cfg.cpu,
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs")),
        step_scheduler_with_optimizer=False,
    )


def patch_loader(cfg: TrainConfig, accelerator, *, patch_size: int, with_lq: bool = True, steps: int | None = None):
    """A DataLoader over exactly the patches a whole run reads (steps x micro-batches x
    processes; ``steps`` defaults to ``cfg.steps``), in a fixed order; resume skips the consumed batches with
    ``accelerator.skip_first_batches``."""
    from torch.utils.data import DataLoader

    from .data import PatchDataset, training_images

    length = (steps or cfg.steps) * cfg.gradient_accumulation_steps * cfg.batch_size * accelerator.num_processes
    dataset = PatchDataset(
        training_images(cfg.train_data), scale=cfg.scale, patch_size=patch_size, length=length, seed=cfg.seed, with_lq=with_lq
    )
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, drop_last=True)


class LRSchedule:
    """Learning-rate factor per optimizer step: "constant", "cosine" (to 1% at the end) or
    "step" (halved at 1/5, 2/5, 3/5 and 4/5 of the steps, as ESRGAN's 200k/400k/600k/800k of 1M).
    A callable object, so ``LambdaLR`` checkpoints it."""

    def __init__(self, kind: str, total_steps: int) -> None:
        if kind not in ("constant", "cosine", "step"):
            raise ValueError(f"lr schedule must be constant, cosine or step, got {kind!r}")
        self.kind, self.total_steps = kind, max(total_steps, 1)

    def __call__(self, step: int) -> float:
        progress = min(step / self.total_steps, 1.0)
        if self.kind == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "step":
            return 0.5 ** min(int(progress * 5), 4)
        return 1.0


def due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


# --------------------------------------------------------------------------------------
# state that Accelerate checkpoints for us
# --------------------------------------------------------------------------------------


class TrainState:
    """The optimizer-step counter; registered with ``accelerator.register_for_checkpointing``."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


class EMA:
    """Exponential moving average of a model's parameters and buffers.

    ``ema = d * ema + (1 - d) * weights`` after every optimizer step, with the warm-up
    ``d = min(decay, (1 + n) / (10 + n))`` at the n-th update (TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``): without it the first thousand steps of a
    0.999 average are mostly the random initial weights, and a short run validates and saves
    those. ``decay=0`` makes the average a copy of the latest weights. ``model`` is a detached
    deep copy kept in float32 on the training device; it is what training scripts validate and save.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (the warm-up above)."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        self.updates += 1
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = current[name].detach().to(average.device)
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), weight)
            else:
                average.copy_(value)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Restart the average (and its warm-up) at ``model``'s current weights (e.g. when GAN training begins)."""
        self.model.load_state_dict(model.state_dict(), strict=True)
        self.updates = 0

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "weights": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averaged weights and update count; the decay stays the one this run was
        configured with. Checkpoints from before the warm-up existed count as warmed up."""
        self.updates = int(state.get("updates", 10**9))
        saved = float(state["decay"])
        if saved != self.decay:
            warnings.warn(
                f"the checkpoint's EMA used decay {saved}; continuing with this run's decay {self.decay}",
                stacklevel=2,
            )
        self.model.load_state_dict(state["weights"], strict=True)


# --------------------------------------------------------------------------------------
# atomic checkpoints
# --------------------------------------------------------------------------------------


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, *, keep: int = 2) -> Path:
    """``accelerator.save_state`` to ``output_dir/checkpoint-{step}``, atomically.

    Every process writes into ``.tmp-checkpoint-{step}``; the main process adds a marker
    file and renames the folder into place (``os.replace`` of a directory is atomic on one
    file system). Older complete checkpoints beyond ``keep`` are then deleted.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f".tmp-{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"step": step}), encoding="utf-8")
        if final.exists():  # re-saving a step: move the old one aside first
            old = output_dir / f".old-{CHECKPOINT_PREFIX}{step}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        for stale in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first (temporary folders never count)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and path.is_dir() and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``output_dir``, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resume(accelerator, output_dir: str | os.PathLike, state: TrainState) -> Path | None:
    """Load the newest complete checkpoint (model, optimizer, scheduler, EMA, step, RNG), if any."""
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed from {checkpoint} at step {state.step}")
    return checkpoint


def keep_configured_schedule(scheduler, *, lr: float, total_steps: int, step: int) -> None:
    """After a resume, put back this run's peak learning rate and schedule length.

    A checkpoint carries the ``LambdaLR`` state, base rates and ``LRSchedule.total_steps``
    included, so ``--lr`` and ``--steps`` given to a resumed run would otherwise be silently
    ignored (as :meth:`EMA.load_state_dict` keeps ``--ema-decay``). Warns when they differ.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate wraps the scheduler
    for index, (schedule, group) in enumerate(zip(inner.lr_lambdas, inner.optimizer.param_groups)):
        if isinstance(schedule, LRSchedule) and schedule.total_steps != max(total_steps, 1):
            warnings.warn(f"the checkpoint's schedule spans {schedule.total_steps} steps; continuing with {total_steps}", stacklevel=2)
            schedule.total_steps = max(total_steps, 1)
        if inner.base_lrs[index] != lr:
            warnings.warn(f"the checkpoint's peak learning rate is {inner.base_lrs[index]}; continuing with {lr}", stacklevel=2)
            inner.base_lrs[index] = lr
        group["initial_lr"] = lr
        group["lr"] = lr * schedule(step)
    inner._last_lr = [group["lr"] for group in inner.optimizer.param_groups]


# --------------------------------------------------------------------------------------
# validation and the released model
# --------------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: nn.Module, dataset_dir: str | os.PathLike, *, scale: int, max_images: int | None = None) -> dict[str, float]:
    """Mean PSNR and SSIM (Y channel, ``scale`` pixels of border cropped) of ``model`` on a
    folder of HR images, LR made with MATLAB-compatible bicubic (the benchmark protocol)."""
    from .data import BenchmarkDataset
    from .metrics import psnr, ssim

    dataset = BenchmarkDataset(dataset_dir, scale=scale)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = {"psnr": 0.0, "ssim": 0.0}
    count = min(len(dataset), max_images) if max_images else len(dataset)
    for index in range(count):
        item = dataset[index]
        sr = model(item.lq.unsqueeze(0).to(device)).clamp(0, 1).float().cpu()
        y_channel = item.name not in dataset.grayscale  # gray images are measured on their gray values
        scores["psnr"] += psnr(sr, item.gt.unsqueeze(0), crop_border=scale, y_channel=y_channel)
        scores["ssim"] += ssim(sr, item.gt.unsqueeze(0), crop_border=scale, y_channel=y_channel)
    model.train(was_training)
    return {k: v / count for k, v in scores.items()}


def training_card(*, recipe: str, cfg: Any, steps: int, data: str) -> str:
    """The model card's Training section: data, recipe, steps and the full config."""
    config_json = json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)
    return (
        f"Trained with srhub's `{recipe}` for {steps:,} optimizer steps on {data}. "
        "The saved weights are the exponential moving average of the trained weights.\n\n"
        f"Training configuration:\n\n```json\n{config_json}\n```"
    )


def save_model(
    model: nn.Module,
    output_dir: str | os.PathLike,
    *,
    recipe: str,
    cfg: Any,
    steps: int,
    data: str,
    metrics: dict[str, float] | None,
    validation_set: str,
    push_to_hub: bool = False,
    hub_repo_id: str | None = None,
) -> Path:
    """``save_pretrained`` (and ``push_to_hub``) with a generated model card."""
    output_dir = Path(output_dir)
    if push_to_hub and not hub_repo_id:
        raise ValueError("--push-to-hub needs --hub-repo-id (e.g. user/espcn-x4)")
    results = []
    if metrics:
        results.append({"dataset": validation_set, "scale": model.scale, "psnr": metrics["psnr"], "ssim": metrics["ssim"]})
    card = dict(
        model_name=hub_repo_id.split("/")[-1] if hub_repo_id else output_dir.name,
        weights_source=f"trained with srhub (`{recipe}`), exponential moving average of the weights",
        training=training_card(recipe=recipe, cfg=cfg, steps=steps, data=data),
        results=results,
    )
    model.save_pretrained(output_dir, model_card_kwargs=card)
    if push_to_hub:
        model.push_to_hub(hub_repo_id, model_card_kwargs=card)
    return output_dir


def validate_and_log(accelerator, cfg: TrainConfig, model: nn.Module, step: int) -> dict[str, float] | None:
    """Validate ``model`` on ``cfg.val_data`` on the main process and log ``val/psnr``, ``val/ssim``."""
    metrics = None
    if accelerator.is_main_process and cfg.val_data:
        metrics = validate(model, cfg.val_data, scale=cfg.scale, max_images=cfg.val_max_images)
        accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=step)
        accelerator.print(f"step {step}: {cfg.val_data} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
    accelerator.wait_for_everyone()
    return metrics


def finish(accelerator, cfg: TrainConfig, model: nn.Module, *, recipe: str, step: int) -> dict[str, float] | None:
    """Final validation, then ``save_pretrained`` (and ``push_to_hub``) of ``model`` into
    ``output_dir/model`` on the main process; ends the trackers."""
    metrics = validate_and_log(accelerator, cfg, model, step)
    if accelerator.is_main_process:
        save_model(
            model,
            Path(cfg.output_dir) / "model",
            recipe=recipe,
            cfg=cfg,
            steps=step,
            data=f"random patches of `{cfg.train_data}`",
            metrics=metrics,
            validation_set=Path(cfg.val_data).name if cfg.val_data else "",
            push_to_hub=cfg.push_to_hub,
            hub_repo_id=cfg.hub_repo_id,
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def record_gan_step(
    accelerator,
    cfg: TrainConfig,
    step: int,
    history: dict[str, list[float]],
    losses: dict[str, torch.Tensor],
    g_loss: torch.Tensor,
    d_loss: torch.Tensor | None,
    *,
    lr: float,
) -> None:
    """Keep and log one step of a GAN script: the generator's loss terms, and the
    discriminator's loss once the GAN phase has started (``d_loss`` None before it)."""
    history["pretrain" if d_loss is None else "generator"].append(g_loss.item())
    if d_loss is not None:
        history["discriminator"].append(d_loss.item())
    if due(step, cfg.log_every):
        logs = {f"train/{k}": v.item() for k, v in losses.items()}
        logs.update({"train/generator": g_loss.item(), "train/lr": lr})
        if d_loss is not None:
            logs["train/discriminator"] = d_loss.item()
        accelerator.log(logs, step=step)


def discriminator_step(
    accelerator, discriminator: nn.Module, gt: torch.Tensor, sr: torch.Tensor, *, relativistic: bool
) -> torch.Tensor:
    """Backpropagate the discriminator's loss on real ``gt`` and fake ``sr`` (detached here):
    half on the reals, half on the fakes, each forward followed by its own backward (as
    BasicSR does, which keeps DDP's one-forward-one-backward rule). Returns the loss."""
    from .losses import gan_loss, ragan_loss

    fake_input = sr.detach()
    real_logits = discriminator(gt)
    if relativistic:
        with torch.no_grad():
            reference = accelerator.unwrap_model(discriminator)(fake_input)
        real_loss = 0.5 * ragan_loss(real_logits, reference, target_is_real=True)
    else:
        real_loss = 0.5 * gan_loss(real_logits, target_is_real=True)
    accelerator.backward(real_loss)
    fake_logits = discriminator(fake_input)
    if relativistic:
        fake_loss = 0.5 * ragan_loss(fake_logits, real_logits.detach(), target_is_real=False)
    else:
        fake_loss = 0.5 * gan_loss(fake_logits, target_is_real=False)
    accelerator.backward(fake_loss)
    return (real_loss + fake_loss).detach()
