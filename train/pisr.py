"""PISR: a teacher that sees the HR image, then an FSRCNN student distilled from it.

    accelerate launch train/pisr.py --scale 4 --output-dir runs/pisr-fsrcnn-x4

Lee, Kim, Ryu, Yoon and Kim, "Learning with Privileged Information for Efficient Image
Super-Resolution" (ECCV 2020), with the authors' FSRCNN settings (configs/fsrcnn/step1.yml,
step2.yml; 192 px HR patches, batch 16, Adam, cosine schedules):

1. ``--teacher-steps``: the teacher (``srhub.models.PISRTeacher``: an encoder that
   compresses the HR image into an LR-sized code, and an FSRCNN decoder) learns to
   reconstruct HR: L1 reconstruction + 1e-4 x L1 "imitation" between code and real LR; lr 1e-3.
2. ``--student-steps``: the student FSRCNN starts from the decoder's weights and learns
   from the LR image: L1 + 1e-6 x variational information distillation (Gaussian,
   heteroscedastic, on the ``expanding`` stage, ``srhub.losses.VIDLoss``); lr 1e-4.

Losses are on the luma channel when the models run in "y" mode (the paper's setting). The
saved model is the student's EMA; the teacher is written to ``output_dir/teacher``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch import nn
from torch.nn import functional as F

from srhub.color import rgb_to_ycbcr
from srhub.losses import VIDLoss, pisr_teacher_loss
from srhub.models import TEACHERS
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


@dataclass
class Config(TrainConfig):
    """PISR teacher training then student distillation (srhub.training.TrainConfig has the shared settings)."""

    output_dir: str = "runs/pisr"
    teacher_config: dict = field(default_factory=dict)  # PISRTeacher overrides (the student mirrors its decoder)
    teacher_steps: int = 100_000  # step 1: teacher training
    student_steps: int = 100_000  # step 2: student distillation
    hr_patch: int = 192  # HR patch side (a multiple of the scale)
    teacher_lr: float = 1e-3  # teacher's peak learning rate (cosine schedule)
    student_lr: float = 1e-4  # student's peak learning rate (cosine schedule)
    imitation_weight: float = 1e-4  # weight of the L1 between the teacher's code and the LR image
    distill_weight: float = 1e-6  # weight of the variational information distillation loss
    distill_layer: str = "expanding"  # decoder stage distilled: feature_extraction, shrinking, mapping, expanding


class TeacherWithCode(nn.Module):
    """``forward(gt) -> (code, reconstruction)``: one forward through the (DDP-wrapped) module."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.teacher.encode(gt)
        return code, self.teacher.decode(code)


class StudentWithFeatures(nn.Module):
    """``forward(lq) -> (sr, decoder stages)`` of the student FSRCNN."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, lq: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.student.forward_with_features(lq)


def main(cfg: Config) -> dict:
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    total = cfg.teacher_steps + cfg.student_steps

    loader = patch_loader(cfg, accelerator, patch_size=cfg.hr_patch, steps=total)
    teacher = TEACHERS["pisr-teacher"](scale=cfg.scale, **cfg.teacher_config)
    student = teacher.student(initialize=False)  # initialised from the trained decoder at the switch
    luma = teacher.color_mode == "y"
    with torch.no_grad():
        _, features = teacher.decode(torch.zeros(1, 1 if luma else 3, 4, 4), return_features=True)
    if cfg.distill_layer not in features:
        raise ValueError(f"distill_layer must be one of {', '.join(features)}, got {cfg.distill_layer!r}")
    vid = VIDLoss(channels=features[cfg.distill_layer].shape[1])
    ema = EMA(student, decay=cfg.ema_decay)
    opt_t = torch.optim.Adam(teacher.parameters(), lr=cfg.teacher_lr)
    opt_s = torch.optim.Adam([*student.parameters(), *vid.parameters()], lr=cfg.student_lr)
    sched_t = torch.optim.lr_scheduler.LambdaLR(opt_t, LRSchedule("cosine", cfg.teacher_steps))
    sched_s = torch.optim.lr_scheduler.LambdaLR(opt_s, LRSchedule("cosine", cfg.student_steps))

    teacher_net, student_net, vid, opt_t, opt_s, loader, sched_t, sched_s = accelerator.prepare(
        TeacherWithCode(teacher), StudentWithFeatures(student), vid, opt_t, opt_s, loader, sched_t, sched_s
    )
    teacher, student = accelerator.unwrap_model(teacher_net).teacher, accelerator.unwrap_model(student_net).student
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)
    if resume(accelerator, cfg, state):  # this run's rates and step counts, not the checkpoint's
        keep_configured_schedule(sched_t, lr=cfg.teacher_lr, total_steps=cfg.teacher_steps, step=min(state.step, cfg.teacher_steps))
        keep_configured_schedule(sched_s, lr=cfg.student_lr, total_steps=cfg.student_steps,
                                 step=max(state.step - cfg.teacher_steps, 0))
    ema.model.to(accelerator.device)
    accelerator.init_trackers(f"pisr-x{cfg.scale}", config=tracker_config(cfg))
    describe_run(accelerator, cfg, loader, script="train/pisr.py", steps=total, start_step=state.step, model=student)

    def channels(image: torch.Tensor) -> torch.Tensor:  # what the losses compare: luma in "y" mode
        return rgb_to_ycbcr(image)[:, :1] if luma else image

    history: dict[str, list[float]] = {"teacher": [], "student": []}
    progress, validated = Progress(accelerator, cfg, total=total, start=state.step), None
    for batch in accelerator.skip_first_batches(loader, state.step * cfg.gradient_accumulation_steps):
        if state.step >= total:
            break
        lq, gt = batch["lq"], batch["gt"]
        teacher_phase = state.step < cfg.teacher_steps
        if teacher_phase:
            with accelerator.accumulate(teacher_net), accelerator.autocast():
                code, reconstruction = teacher_net(gt)
                loss, parts = pisr_teacher_loss(
                    reconstruction, channels(gt), code, channels(lq), imitation_weight=cfg.imitation_weight
                )
                accelerator.backward(loss)
                opt_t.step()
                opt_t.zero_grad(set_to_none=True)
        else:
            with accelerator.accumulate(student_net, vid), accelerator.autocast():
                with torch.no_grad():
                    teacher.eval()
                    _, target = teacher.decode(teacher.encode(gt), return_features=True)
                sr, stages = student_net(lq)
                parts = {
                    "reconstruction": F.l1_loss(channels(sr), channels(gt)),
                    "vid": vid(stages[cfg.distill_layer], target[cfg.distill_layer]),
                }
                loss = parts["reconstruction"] + cfg.distill_weight * parts["vid"]
                accelerator.backward(loss)
                opt_s.step()
                opt_s.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        (sched_t if teacher_phase else sched_s).step()
        state.step += 1
        if teacher_phase:
            if state.step == cfg.teacher_steps:  # the student starts as a copy of the trained decoder
                student.body.load_state_dict(teacher.decoder.state_dict())
                ema.reset(student)
        else:
            ema.update(student)
        prefix = "teacher" if teacher_phase else "student"
        history[prefix].append(loss.item())
        lr = (sched_t if teacher_phase else sched_s).get_last_lr()[0]
        progress.update(state.step, {f"{prefix}_{k}": v for k, v in parts.items()} | {f"{prefix}_loss": loss}, lr=lr)
        if due(state.step, cfg.val_every) and cfg.teacher_steps < state.step < total:
            validated = {"step": state.step, "metrics": validate_and_log(accelerator, cfg, ema.model, state.step, progress)}
        if due(state.step, cfg.checkpoint_every):
            save_checkpoint(accelerator, cfg.output_dir, state.step, keep=cfg.keep_checkpoints)

    if accelerator.is_main_process:
        teacher.save_pretrained(
            Path(cfg.output_dir) / "teacher",
            model_card_kwargs=dict(model_name=f"{Path(cfg.output_dir).resolve().name}-teacher",
                                   weights_source="trained with srhub (`train/pisr.py`, step 1)"),
        )
    metrics = finish(accelerator, cfg, ema.model, recipe="train/pisr.py (PISR student)", step=state.step,
                     validated=validated, progress=progress)
    return {"step": state.step, "losses": history, "metrics": metrics}


if __name__ == "__main__":
    main(parse_config(Config))
