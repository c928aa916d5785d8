"""Ship a model trained by ``train/psnr.py`` or ``train/pisr.py`` inside srhub.

    python benchmarks/ship_trained.py espcn-x4 runs/espcn-x4/model \\
        --command "python train/psnr.py --model espcn --scale 4 --steps 3000 ..." --wall-seconds 312

Measures the trained model with :func:`srhub.benchmark.run_benchmark` (Set5 and Set14,
the papers' protocol) in float32 and with its weights rounded to float16, keeps float16
when that costs less than 0.01 dB on Set5, and writes

* ``srhub/weights/<name>.safetensors``: the weights;
* ``srhub/weights/<name>.json``: the record: model config, training (script, full config,
  steps, wall time, data), measured results next to bicubic and the paper's figures;
* ``model_cards/<name>.md``: the card generated from that record (``srhub.pretrained.trained_card``);
* the README's trained-models table (``benchmarks/results_table.py``).

The paper figures and citations live in ``srhub.pretrained.PAPER_RESULTS``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srhub import __version__  # noqa: E402
from srhub.benchmark import run_benchmark  # noqa: E402
from srhub.hub import load  # noqa: E402
from srhub.pretrained import PAPER_RESULTS, write_card  # noqa: E402
from srhub.training import config_to_dict  # noqa: E402

DATASETS = ["Set5", "Set14"]
TRAIN_291 = ("random crops of train-291: Yang et al.'s 91 images and the 200 BSDS300 training images "
             "(research use only, as their authors publish them); LR by MATLAB-bicubic imresize")
T91 = ("random crops of t91: Yang et al.'s 91 images alone (the t91_* files of the shared 291-image set; research use "
       "only, as their authors publish them), the data of SRCNN's and ESPCN's 91-image models; LR by MATLAB-bicubic imresize")
PHOTOS_43 = ("random patches of photos-43 (43 photos and renders from Debian's wallpaper packages, each under the "
             "licence in its package's copyright file; 1200 px long side; LR by MATLAB-bicubic imresize)")
# measured too where they are on disk (``srhub benchmark --download`` fetches the Hub copies on a connected
# machine); the README table says "not on disk" where a record has no figure for them
EXTRA_DATASETS = ["B100", "Urban100"]
FP16_TOLERANCE_DB = 0.01
BEAT_MARGIN_DB = 0.005  # a new model must beat the previous record by more than this


def on_disk(dataset: str, data_root: str | None) -> bool:
    from srhub.data import resolve_benchmark

    try:
        resolve_benchmark(dataset, data_root=data_root)
    except FileNotFoundError:
        return False
    return True


def recorded_training_config(command: str) -> tuple[str, dict]:
    """``(script, full config)`` of a ``python train/X.py ...`` command, as the script resolves it."""
    words = shlex.split(command)
    script = next(word for word in words if word.startswith("train/") and word.endswith(".py"))
    args = words[words.index(script) + 1 :]
    spec = importlib.util.spec_from_file_location("train_script", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_script"] = module  # dataclasses look their module up while building Config
    spec.loader.exec_module(module)
    from srhub.training import parse_config

    cfg = parse_config(module.Config, args)
    if hasattr(module, "resolve"):
        cfg = module.resolve(cfg)
    return script, config_to_dict(cfg)


def describe_data(train_config: dict) -> str:
    """The card's sentence on what a ``train/*.py`` run read, from its ``--train-data`` (and ``--train-lq-data``)."""
    folder = Path(str(train_config["train_data"])).name
    if train_config.get("train_lq_data"):
        return f"random aligned patches of {folder} paired with the LR images of {Path(train_config['train_lq_data']).name}"
    return {"train-291": TRAIN_291, "t91": T91, "photos-43": PHOTOS_43}.get(folder, f"random patches of {folder} (LR by MATLAB-bicubic imresize)")


def _current_record(name: str) -> dict | None:
    """The record ``name`` ships today in this checkout (the one ``ship`` replaces), None for a new name."""
    path = ROOT / "srhub" / "weights" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def previous_record(name: str) -> dict[str, float]:
    """{dataset: PSNR} of the record ``name`` ships today (empty for a new name): what a retrained model must beat."""
    record = _current_record(name) or {"results": []}
    return {row["dataset"]: row["psnr"] for row in record["results"] if row["dataset"] in DATASETS}


def previous_training(name: str) -> dict | None:
    """The ``training`` section of the record ``name`` ships today (None for a new name)."""
    record = _current_record(name)
    return record["training"] if record else None


def measure(model, scale: int, data_root: str | None, datasets: list[str] = DATASETS) -> dict[str, dict]:
    rows = run_benchmark([model], datasets, [scale], data_root=data_root, progress=False)
    return {row["dataset"]: row for row in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="pretrained name, <model>-x<scale>")
    parser.add_argument("folder", help="the run's model folder (config.json, model.safetensors)")
    parser.add_argument("--command", required=True, help="the training command, as run")
    parser.add_argument("--wall-seconds", type=float, required=True, help="wall time of the whole training run")
    parser.add_argument("--steps", type=int, help="optimizer steps actually run (default: the config's)")
    parser.add_argument("--hardware", default="2 cores", help='e.g. "2 cores shared with other jobs"')
    parser.add_argument("--note", default="", help="a sentence on the run (machine load, what limits it)")
    parser.add_argument("--data-root", default=None, help="benchmark folder root (default: ../shared/datasets/benchmark)")
    parser.add_argument("--replace", action="store_true",
                        help="ship even when the model does not beat the shipped record on Set5 and Set14 (e.g. a corrected record)")
    args = parser.parse_args()
    name = args.name
    if name not in PAPER_RESULTS:
        raise SystemExit(f"no paper figures recorded for {name!r} in srhub.pretrained.PAPER_RESULTS")
    torch.set_num_threads(2)
    model = load(args.folder).float().eval()
    script, train_config = recorded_training_config(args.command)
    command = args.command
    output_dir = train_config["output_dir"]
    if Path(output_dir).is_absolute():  # record the machine-independent form, runs/<name>
        command = command.replace(output_dir, f"runs/{Path(output_dir).name}")
        train_config["output_dir"] = f"runs/{Path(output_dir).name}"
    if "teacher_steps" in train_config:  # train/pisr.py: teacher, then student
        steps = args.steps or train_config["teacher_steps"] + train_config["student_steps"]
    else:
        steps = args.steps or train_config["steps"]
    training = {
        "script": script,
        "command": command,
        "config": train_config,
        "steps": steps,
        "wall_seconds": round(args.wall_seconds, 1),
        "data": describe_data(train_config),
        "validation": "Set5",
        "hardware": f"{platform.machine()} CPU, {args.hardware}, PyTorch {torch.__version__}",
        "note": args.note,
    }
    return ship(name, model, training, data_root=args.data_root, must_beat=None if args.replace else previous_record(name))


def ship(name: str, model, training: dict, *, data_root: str | None = None, must_beat: dict | None = None) -> int:
    """Measure ``model``, write its weights, record, card and the README table.

    ``training`` is the record's ``training`` section (script, command, config, steps,
    wall_seconds, data, validation, hardware, note). Returns 1 (and writes nothing) when the
    model does not beat bicubic, 2 when it does not beat ``must_beat`` ({dataset: PSNR},
    e.g. the previous record's) on every dataset there."""
    scale = model.scale
    datasets = DATASETS + [d for d in EXTRA_DATASETS if on_disk(d, data_root)]
    fp32 = measure(model, scale, data_root, datasets)
    state32 = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state16 = {k: v.half() if v.is_floating_point() else v for k, v in state32.items()}
    model.load_state_dict(state16)  # rounded to fp16, computed in fp32 (what loading the shipped file does)
    fp16 = measure(model, scale, data_root, datasets)
    loss = fp32["Set5"]["psnr"] - fp16["Set5"]["psnr"]
    use_fp16 = abs(loss) < FP16_TOLERANCE_DB
    shipped = fp16 if use_fp16 else fp32
    if not use_fp16:
        model.load_state_dict(state32)
    bicubic = {
        (row["dataset"]): row
        for row in run_benchmark(["bicubic"], datasets, [scale], data_root=data_root, progress=False)
    }

    losing = [d for d in DATASETS if shipped[d]["psnr"] <= bicubic[d]["psnr"]]
    if losing:  # never ship a model that does not beat bicubic
        for d in DATASETS:
            print(f"{name} {d}: {shipped[d]['psnr']:.2f} dB vs bicubic {bicubic[d]['psnr']:.2f} dB")
        print(f"not shipped: {name} does not beat bicubic on {', '.join(losing)}")
        return 1
    # beating means by more than rounding noise: the table shows two decimals
    behind = [d for d, value in (must_beat or {}).items() if shipped[d]["psnr"] <= value + BEAT_MARGIN_DB]
    if behind:
        for d, value in must_beat.items():
            print(f"{name} {d}: {shipped[d]['psnr']:.4f} dB vs the previous record's {value:.4f} dB "
                  f"({shipped[d]['psnr'] - value:+.4f}; it must gain more than {BEAT_MARGIN_DB} dB)")
        print(f"not shipped: {name} does not beat its previous record on {', '.join(behind)}")
        return 2

    paper = PAPER_RESULTS[name]
    results = []
    for dataset in datasets:
        row = shipped[dataset]
        figures = paper["results"].get(dataset, {})
        results.append(
            {
                "dataset": dataset,
                "scale": scale,
                "psnr": row["psnr"],
                "ssim": row["ssim"],
                "seconds_per_image": row["seconds_per_image"],
                "images": row["images"],
                "bicubic_psnr": bicubic[dataset]["psnr"],
                "bicubic_ssim": bicubic[dataset]["ssim"],
                "paper_psnr": figures.get("psnr"),
                "paper_ssim": figures.get("ssim"),
            }
        )
    config = {k: v for k, v in model.config.items() if k != "architecture"}
    record = {
        "name": name,
        "architecture": model.architecture,
        "config": config,
        "dtype": "float16" if use_fp16 else "float32",
        "params": model.num_parameters(),
        "training": training,
        "results": results,
        "fp16_check": {
            "set5_psnr_fp32": fp32["Set5"]["psnr"],
            "set5_psnr_fp16": fp16["Set5"]["psnr"],
            "tolerance_db": FP16_TOLERANCE_DB,
        },
        "paper": {"citation": paper["citation"], "source": paper["source"]},
        "measured_with": f"srhub {__version__}, srhub.benchmark.run_benchmark on CPU (torch threads 2)",
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    weights_dir = ROOT / "srhub" / "weights"
    weights_dir.mkdir(exist_ok=True)
    state = state16 if use_fp16 else state32
    save_file({k: v.contiguous() for k, v in state.items()}, weights_dir / f"{name}.safetensors")
    (weights_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    card_path = write_card(name, record, ROOT / "model_cards" / f"{name}.md")

    import results_table  # benchmarks/results_table.py, next to this file

    results_table.update_readme()
    for row in results:
        print(
            f"{name} {row['dataset']} x{scale}: {row['psnr']:.2f} dB / {row['ssim']:.4f} "
            f"(bicubic {row['bicubic_psnr']:.2f}, paper {row['paper_psnr']}) {row['seconds_per_image']:.3f} s/image"
        )
    print(f"fp32 {fp32['Set5']['psnr']:.4f} vs fp16 {fp16['Set5']['psnr']:.4f} on Set5: shipped {record['dtype']}")
    print(f"wrote {weights_dir / name}.{{safetensors,json}} and {card_path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
