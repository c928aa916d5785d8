"""The pieces every ``train/*.py`` script shares, kept here so they are written and tested once.

* :func:`parse_config`: CLI flags generated from a config dataclass, with an optional
  ``--config file.yaml|toml`` (precedence: dataclass defaults < file < flags).
* :class:`EMA`: an exponential moving average of a model's weights (the weights we save).
* :class:`TrainState`: the step counter, checkpointed with the rest.
* :func:`save_checkpoint` / :func:`latest_checkpoint`: ``accelerator.save_state`` into a
  hidden temporary folder, renamed into place only once complete, so a run killed while
  saving never leaves a checkpoint that resume would pick up and fail to load.
* :func:`make_accelerator`: checks the settings (:func:`check_config`) and refuses launches
  that would run N copies of one process instead of DDP; :func:`describe_run` prints the
  start-up line; :class:`Progress` the progress bar and the averaged losses.
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
        if isinstance(value, str):  # "val_data: Set5" means one set
            value = [value]
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


def field_help(config_cls: type) -> dict[str, str]:
    """Each field's ``# comment`` in the class body (the nearest class in the MRO that
    defines the field wins), read from the source: the help text of its flag."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    found: dict[str, str] = {}
    for cls in config_cls.__mro__:
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):  # no source (e.g. a frozen build): flags keep their defaults only
            continue
        comments = {
            token.start[0]: token.string.lstrip("#").strip()
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT
        }
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments:
                found.setdefault(node.target.id, comments[node.end_lineno])
    return found


def parse_config(config_cls: type, argv: list[str] | None = None) -> Any:
    """Parse ``argv`` into ``config_cls``: one ``--flag`` per field, plus ``--config FILE``.

    Each flag's help is the field's ``# comment`` in the dataclass (see :func:`field_help`)
    and its default; the dataclass docstring is the description. Boolean fields get
    ``--name`` / ``--no-name``, so a field must not itself be named ``no_...``.
    """
    hints = typing.get_type_hints(config_cls)
    helps = field_help(config_cls)
    parser = argparse.ArgumentParser(
        description=(config_cls.__doc__ or "").strip())
    parser.add_argument("--config", help="YAML or TOML file overriding the defaults (flags override it)")
    for field in dataclasses.fields(config_cls):
        element, sequence, optional = _field_kind(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = helps.get(field.name, "")
        help_text = f"{help_text} (default: {default!r})" if help_text else f"default: {default!r}"
        if element is bool and not sequence:
            if field.name.startswith("no_"):
                raise TypeError(f"boolean config field {field.name!r}: name it without 'no_' (the flag --no-... is made for it)")
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=_json_dict if element is dict else element,
                nargs="*" if sequence else None,
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=field.name.upper(),
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
    train_data: str = "../shared/datasets/photos-43"  # HR image folder, or hf://datasets/<repo_id>
    train_lq_data: str | None = None  # LR folder paired by file name with --train-data (e.g. RealSR); None: bicubic LR
    val_data: tuple[str, ...] = ("Set5",)  # benchmark names or HR folders for PSNR/SSIM, each logged (none: no validation)
    val_every: int = 1000  # optimizer steps between validations (0: only at the end)
    val_max_images: int | None = None  # validate on the first N images of each set only
    scale: int = 4  # upscaling factor
    steps: int = 100_000  # optimizer steps in total
    batch_size: int = 16  # per process and micro-step
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    seed: int = 0  # seeds the patches, the initial weights and every random draw
    mixed_precision: str = "no"  # "no", "fp16" or "bf16"
    cpu: bool = False  # force the CPU even where an accelerator is present
    num_workers: int = 2  # DataLoader worker processes per training process
    ema_decay: float = 0.999  # decay of the weights' moving average (the weights validated and saved)
    checkpoint_every: int = 5000  # optimizer steps between checkpoints (0: none)
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all)
    resume: bool = True  # continue from the newest checkpoint in output_dir; --no-resume moves old ones aside
    log_every: int = 100  # optimizer steps between logged (interval- and process-averaged) losses
    log_with: str = "tensorboard"  # an Accelerate tracker name, or "none"
    push_to_hub: bool = False  # upload the final model to the Hugging Face Hub (needs --hub-repo-id)
    hub_repo_id: str | None = None  # e.g. user/espcn-x4: the Hub repo for --push-to-hub

    def __post_init__(self) -> None:
        if isinstance(self.val_data, str):  # TrainConfig(val_data="Set5") means one set, not four letters
            self.val_data = (self.val_data,) if self.val_data else ()


def check_config(cfg: TrainConfig) -> None:
    """Refuse, before anything is loaded or trained, settings that would only fail later:
    a missing training or validation set, ``--push-to-hub`` without a repo, bad numbers."""
    from .data import resolve_benchmark

    if cfg.push_to_hub and not cfg.hub_repo_id:
        raise ValueError("--push-to-hub needs --hub-repo-id (e.g. user/espcn-x4)")
    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"--mixed-precision must be 'no', 'fp16' or 'bf16', got {cfg.mixed_precision!r}")
    for name in ("steps", "batch_size", "gradient_accumulation_steps", "scale"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.train_data.startswith("hf://") and not Path(cfg.train_data).is_dir():
        raise FileNotFoundError(f"--train-data: folder not found: {cfg.train_data} (a folder of HR images, or hf://datasets/<repo_id>)")
    if cfg.train_lq_data is not None and not Path(cfg.train_lq_data).is_dir():
        raise FileNotFoundError(f"--train-lq-data: folder not found: {cfg.train_lq_data}")
    for source in cfg.val_data:
        try:
            resolve_benchmark(source)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"--val-data {source}: {str(error).split('; set data_root')[0]}. Pass a folder of HR images, "
                "set SRHUB_DATA_ROOT to the folder holding the benchmark sets, or give no --val-data"
            ) from None


def _launched_processes() -> int:
    """How many processes the launcher started (torchrun's WORLD_SIZE, or MPI's), 1 if none."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def make_accelerator(cfg: TrainConfig):
    """The ``Accelerator`` every script uses, after :func:`check_config`.

    Schedulers are stepped by hand once per optimizer step, so a schedule means the same
    thing on one process or eight. ``accelerate launch --multi_gpu --num_processes N`` runs
    DDP on GPUs, and on the CPU (gloo) where there is no GPU; a launch that would give N
    independent single-process runs writing into one folder is refused."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    check_config(cfg)
    if os.environ.get("MASTER_ADDR") and _launched_processes() == 1 and os.environ.get("ACCELERATE_USE_CPU") == "True":
        raise RuntimeError(
            "accelerate launch --cpu --num_processes N starts only one process (Accelerate leaves multi-CPU to mpirun). "
            "For DDP on the CPU run: accelerate launch --multi_gpu --num_processes N train/SCRIPT.py ..."
        )
    launched = _launched_processes()
    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and not cfg.cpu and per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"{per_machine} processes on this machine but {torch.cuda.device_count()} GPU(s): launch at most one process "
            "per GPU, or run them on the CPU with the script's --cpu"
        )
    accelerator = Accelerator(
        cpu=cfg.cpu or (launched > 1 and not has_accelerator),  # otherwise Accelerate runs N separate copies
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs")),
        step_scheduler_with_optimizer=False,
    )
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"launched as {launched} processes, but each runs alone ({accelerator.distributed_type}): they would train "
            "the same model side by side and write into the same folder. Check the accelerate launch flags "
            "(--multi_gpu --num_processes N)."
        )
    return accelerator


def patch_loader(cfg: TrainConfig, accelerator, *, patch_size: int, with_lq: bool = True, steps: int | None = None):
    """A DataLoader over exactly the patches a whole run reads (steps x micro-batches x
    processes; ``steps`` defaults to ``cfg.steps``), in a fixed order; resume skips the consumed batches with
    ``accelerator.skip_first_batches``. With ``cfg.train_lq_data`` the LR patches are cut from
    the paired LR images (matched by name, :class:`srhub.data.PairedFolderDataset`) instead of
    made by bicubic downscaling."""
    from torch.utils.data import DataLoader

    from .data import PairedFolderDataset, PatchDataset, training_images

    length = (steps or cfg.steps) * cfg.gradient_accumulation_steps * cfg.batch_size * accelerator.num_processes
    if cfg.train_lq_data is not None:
        pairs = PairedFolderDataset(cfg.train_data, cfg.train_lq_data, scale=cfg.scale).pairs
        images, lq_images = [hr for hr, _ in pairs], [lq for _, lq in pairs]
    else:
        images, lq_images = training_images(cfg.train_data), None
    accelerator.print(f"reading {len(images)} training images from {cfg.train_data} ...", flush=True)
    dataset = PatchDataset(
        images, scale=cfg.scale, patch_size=patch_size, length=length, seed=cfg.seed, with_lq=with_lq, lq_images=lq_images
    )
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, drop_last=True)


def describe_run(accelerator, cfg: TrainConfig, loader, *, script: str, steps: int, start_step: int, model: nn.Module) -> None:
    """Print the start-up line: processes, device, precision, data, steps, output folder."""
    dataset = loader.dataset
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    backend = f", {accelerator.state.backend}" if accelerator.num_processes > 1 else ""
    source = cfg.train_data + (f" paired with LR {cfg.train_lq_data}" if cfg.train_lq_data else "")
    accelerator.print(
        f"{script}: {accelerator.num_processes} process(es) ({accelerator.distributed_type.value}{backend}), "
        f"device {accelerator.device}, precision {accelerator.mixed_precision}; "
        f"{type(model).__name__} x{cfg.scale} ({sum(p.numel() for p in model.parameters()):,} parameters); "
        f"data {len(dataset.images)} images from {source}, {dataset.patch_size} px HR patches, "
        f"{per_step} per step ({cfg.batch_size} x {cfg.gradient_accumulation_steps} accumulation x "
        f"{accelerator.num_processes} processes); steps {start_step} -> {steps}; output {cfg.output_dir}",
        flush=True,
    )


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


def resume(accelerator, cfg: TrainConfig, state: TrainState) -> Path | None:
    """Load the newest complete checkpoint (model, optimizer, scheduler, EMA, step, RNG), if any.

    With ``cfg.resume`` off, a fresh run must neither have its new checkpoints pruned in
    favour of older, higher-numbered ones nor be resumed from them later: the old
    checkpoints and ``model/`` are moved into ``output_dir/previous-<time>/``, and said so.
    """
    output_dir = Path(cfg.output_dir)
    if not cfg.resume:
        old = list_checkpoints(output_dir) + [p for p in (output_dir / "model",) if p.exists()]
        if old and accelerator.is_main_process:
            import time

            aside = output_dir / time.strftime("previous-%Y%m%d-%H%M%S")
            aside.mkdir(parents=True)
            for path in old:
                os.replace(path, aside / path.name)
            accelerator.print(f"--no-resume: moved the earlier run's {', '.join(p.name for p in old)} to {aside}", flush=True)
        accelerator.wait_for_everyone()
        return None
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed from {checkpoint} at step {state.step}", flush=True)
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
# progress, validation and the released model
# --------------------------------------------------------------------------------------


class Progress:
    """The console and tracker side of the loop: a tqdm bar on the main process (steps/s,
    ETA, learning rate, losses) and, every ``log_every`` steps, each loss averaged over the
    steps since the last log and over all processes, logged as ``train/<name>``."""

    def __init__(self, accelerator, cfg: TrainConfig, *, total: int, start: int) -> None:
        from tqdm.auto import tqdm

        self.accelerator, self.log_every = accelerator, cfg.log_every
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, disable=not accelerator.is_main_process)

    def update(self, step: int, losses: dict[str, torch.Tensor], *, lr: float) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
            self.counts[name] = self.counts.get(name, 0) + 1
        self.bar.update(1)
        if due(step, self.log_every):
            names = sorted(self.sums)  # every process holds the same names at the same step
            means = torch.stack([self.sums[n] / self.counts[n] for n in names])
            means = self.accelerator.reduce(means.to(self.accelerator.device), reduction="mean")
            logs = {f"train/{n}": v.item() for n, v in zip(names, means)}
            self.accelerator.log(logs | {"train/lr": lr}, step=step)
            self.bar.set_postfix({n: f"{v:.4g}" for n, v in zip(names, means.tolist())} | {"lr": f"{lr:.3g}"}, refresh=False)
            self.sums, self.counts = {}, {}

    def write(self, text: str) -> None:
        if self.accelerator.is_main_process:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


@torch.no_grad()
def validate(
    model: nn.Module, dataset_dir: str | os.PathLike, *, scale: int, max_images: int | None = None, grid: list | None = None
) -> dict[str, float]:
    """Mean PSNR and SSIM (Y channel, ``scale`` pixels of border cropped) of ``model`` on a
    folder of HR images, LR made with MATLAB-compatible bicubic (the benchmark protocol).
    Given a list ``grid``, appends a (3, h, 3w) image of the first image's centre crop:
    bicubic | SR | GT."""
    from .data import BenchmarkDataset
    from .degradations import imresize
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
        if grid is not None and index == 0:
            bicubic = imresize(item.lq, scale=scale).clamp(0, 1)
            height, width = item.gt.shape[-2:]
            side = min(height, width, 128)
            top, left = (height - side) // 2, (width - side) // 2
            crops = [image[..., top : top + side, left : left + side] for image in (bicubic, sr[0], item.gt)]
            grid.append(torch.cat(crops, dim=-1))
    model.train(was_training)
    return {k: v / count for k, v in scores.items()}


def validate_and_log(accelerator, cfg: TrainConfig, model: nn.Module, step: int, progress: Progress | None = None):
    """Validate ``model`` on each of ``cfg.val_data`` on the main process; log ``val/<set>/psnr``,
    ``val/<set>/ssim`` and a bicubic | SR | GT image (``val/<set>``) to TensorBoard.
    Returns ``{set name: {"psnr", "ssim"}}`` on the main process (None elsewhere)."""
    from .data import resolve_benchmark

    results = None
    if accelerator.is_main_process and cfg.val_data:
        results = {}
        for source in cfg.val_data:
            name = resolve_benchmark(source)[0]
            grid: list[torch.Tensor] = []
            metrics = validate(model, source, scale=cfg.scale, max_images=cfg.val_max_images, grid=grid)
            results[name] = metrics
            accelerator.log({f"val/{name}/{k}": v for k, v in metrics.items()}, step=step)
            if cfg.log_with == "tensorboard" and grid:
                accelerator.get_tracker("tensorboard", unwrap=True).add_image(f"val/{name}", grid[0], step)
            line = f"step {step}: {name} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}"
            if progress is not None:
                progress.write(line)
            else:
                accelerator.print(line, flush=True)
    accelerator.wait_for_everyone()
    return results


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
    metrics: dict[str, dict[str, float]] | None,
    model_name: str | None = None,
    push_to_hub: bool = False,
    hub_repo_id: str | None = None,
) -> Path:
    """``save_pretrained`` (and ``push_to_hub``) with a generated model card, titled
    ``model_name`` (default: the folder above ``output_dir``, i.e. the run's name), whose usage
    line loads ``hub_repo_id`` or else ``output_dir`` as given."""
    output_dir = Path(output_dir)
    if push_to_hub and not hub_repo_id:
        raise ValueError("--push-to-hub needs --hub-repo-id (e.g. user/espcn-x4)")
    results = [
        {"dataset": name, "scale": model.scale, "psnr": values["psnr"], "ssim": values["ssim"]}
        for name, values in (metrics or {}).items()
    ]
    card = dict(
        model_name=hub_repo_id.split("/")[-1] if hub_repo_id else (model_name or output_dir.resolve().parent.name),
        repo_id=hub_repo_id or output_dir.as_posix(),
        weights_source=f"trained with srhub (`{recipe}`), exponential moving average of the weights",
        training=training_card(recipe=recipe, cfg=cfg, steps=steps, data=data),
        results=results,
    )
    model.save_pretrained(output_dir, model_card_kwargs=card)
    if push_to_hub:
        model.push_to_hub(hub_repo_id, model_card_kwargs=card)
    return output_dir


def check_in_sync(accelerator, model: nn.Module) -> None:
    """Raise unless every process holds bit-identical weights (DDP keeps them so; separate
    runs launched side by side would not). Compares a sum and an absolute sum per tensor."""
    if accelerator.num_processes == 1:
        return
    sums = torch.stack([t for p in model.state_dict().values() if p.is_floating_point() for t in (p.double().sum(), p.double().abs().sum())])
    gathered = accelerator.gather(sums.to(accelerator.device)[None])
    if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
        raise RuntimeError("the processes hold different weights: gradients were not synchronised")
    accelerator.print(f"weights identical on all {accelerator.num_processes} processes", flush=True)


def finish(
    accelerator, cfg: TrainConfig, model: nn.Module, *, recipe: str, step: int, validated: dict | None = None,
    progress: Progress | None = None,
) -> dict | None:
    """Final validation (unless ``validated``, ``{"step", "metrics"}`` of the last one, says it
    ran at this step already; every process must pass the same step), then
    ``save_pretrained`` (and ``push_to_hub``) of ``model`` into ``output_dir/model`` on the
    main process; ends the trackers."""
    if progress is not None:
        progress.close()
    check_in_sync(accelerator, model)
    if validated is not None and validated["step"] == step:
        metrics = validated["metrics"]
    else:
        metrics = validate_and_log(accelerator, cfg, model, step)
    if accelerator.is_main_process:
        data = f"`{cfg.train_data}` paired with LR `{cfg.train_lq_data}`" if cfg.train_lq_data else f"`{cfg.train_data}`"
        folder = save_model(
            model,
            Path(cfg.output_dir) / "model",
            recipe=recipe,
            cfg=cfg,
            steps=step,
            data=f"random patches of {data}",
            metrics=metrics,
            push_to_hub=cfg.push_to_hub,
            hub_repo_id=cfg.hub_repo_id,
        )
        accelerator.print(f"saved {folder} (load it with srhub.load({str(folder)!r}))", flush=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


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
