"""Ship what ``train/gpu_zoo.py`` brought back from the GPU: weights, records, cards, the README table.

    python benchmarks/ship_gpu_zoo.py /path/to/returned/files            # measure, compare, ship
    python benchmarks/ship_gpu_zoo.py /path/to/returned/files --dry-run  # measure and compare only

The folder holds the run's ``results.json``, ``log.txt`` and ``weights.tar.part*``. The parts
are joined and unpacked into ``runs/gpu-zoo/models/<name>/`` (srhub model folders). Each model
srhub ships is measured on Set5 and Set14 on this CPU (``benchmark/ship_trained.ship``) and
shipped only when it beats bicubic and its previous record (``srhub/weights/<name>.json``) on
both. Models larger than ``--max-mb`` are measured and reported but not shipped (weights in git
stay small). PISR's claim is checked the same way: the distilled student against the plain
FSRCNN trained with the same data, loss and steps, on Set5 and Set14.
``runs/gpu-zoo/report.json`` keeps every figure and the Set5 curves.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from srhub.hub import load  # noqa: E402
from srhub.pretrained import PAPER_RESULTS  # noqa: E402

DEFAULT_COMMAND = "PYTHONUNBUFFERED=1 python train/gpu_zoo.py --data local/gpu-data --out $OUT --budget-seconds 520"


def unpack(folder: Path, dest: Path) -> list[str]:
    """Join ``weights.tar.part*`` (in numeric order) and extract the model folders into ``dest``."""
    parts = sorted(folder.glob("weights.tar.part*"), key=lambda p: int(p.name.removeprefix("weights.tar.part")))
    if not parts:
        raise FileNotFoundError(f"no weights.tar.part* in {folder}")
    data = b"".join(part.read_bytes() for part in parts)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, links out of dest, devices
        return sorted({member.name.split("/")[0] for member in tar.getmembers()})


def _points(curve: list, *, most: int = 4) -> str:
    points = [f"{p['set5_ema']:.2f} / {p['set5_raw']:.2f} dB at {p['step']:,} steps ({p['seconds']:.0f} s)"
              for p in curve if "set5_ema" in p]
    shown = points[:: max(1, len(points) // most)][:most]
    return ", ".join(shown + [point for point in points[-1:] if point not in shown])


def curve_note(result: dict, previous_training: dict | None = None) -> str:
    tuned = result.get("fine_tune_all")
    if tuned:  # FSRCNN's transfer in two phases: split the run's curve where the second starts
        first = result["steps"] - tuned["steps"]
        curve = (f"the deconvolution alone {_points([p for p in result['curve'] if p['step'] <= first], most=2)}; "
                 f"then every layer at lr {tuned['lr']:g} {_points([p for p in result['curve'] if p['step'] > first], most=2)}")
    else:
        curve = _points(result["curve"])
    device = result.get("device", "")
    if not device.endswith(" CPU"):
        where = "one GPU shared with the other zoo workers"
    elif result.get("threads", 2) == 1:  # records before --threads ran on both cores
        where = f"one thread of the CPU ({device.removesuffix(' CPU')})"
    else:
        where = f"the CPU ({device.removesuffix(' CPU')}), alone"
    note = (f"{result['steps']:,} steps in {result['seconds']:.0f} s on {where}; "
            f"Set5 (EMA / raw) {curve}; kept the {result['best_source']} weights of step "
            f"{result['best_step']:,} ({result['best_set5_psnr']:.2f} dB on Set5 in training).")
    if result.get("continued_from"):
        before = ""
        if previous_training:
            before = (f" ({previous_training['steps']:,} steps, {previous_training['wall_seconds'] / 60:.1f} min on "
                      f"{previous_training['hardware']}, by `{previous_training['script']}`)")
        note += f" Continued from the weights srhub shipped before{before}, at a peak learning rate of {result['lr']:g}."
    if tuned:
        note += (f" FSRCNN's transfer: the {result['transfer_from']} network, its deconvolution fine-tuned alone, "
                 f"then every layer at a tenth of the rate.")
    elif result.get("transfer_from"):
        note += f" FSRCNN's transfer: the {result['transfer_from']} network with only its deconvolution fine-tuned."
    if result.get("features_from"):
        note += (f" Its first two layers (conv1, conv2) started as those of {result['features_from']}, with a fresh "
                 f"sub-pixel layer, at the full learning rate.")
    if result.get("teacher"):
        note += (f" PISR: teacher {result['teacher']['steps']:,} steps ({result['teacher']['seconds']:.0f} s), "
                 f"then the student.")
    return note


def training_data(result: dict) -> str:
    """The card's words on what a zoo run trained on: each folder it packed (train-291 for runs
    recorded before ``train_data`` was)."""
    from ship_trained import describe_data

    return "; and ".join(describe_data({"train_data": folder}) for folder in result.get("train_data") or ["train-291"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the files the device run returned")
    parser.add_argument("--names", nargs="*", help="only these models (default: every model srhub ships)")
    parser.add_argument("--dry-run", action="store_true", help="measure and compare, write nothing under srhub/")
    parser.add_argument("--max-mb", type=float, default=20.0, help="do not ship weights larger than this")
    parser.add_argument("--command", default=DEFAULT_COMMAND, help="the device command as run")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--replace", action="store_true",
                        help="ship the named models even where they do not beat their records by the margin "
                             "(say why in the README and the commit)")
    args = parser.parse_args()
    if args.replace and not args.names:
        parser.error("--replace needs --names: only the models named are shipped past their records")

    from ship_trained import (
        measure,
        previous_record,
        previous_training,
        ship,
    )

    torch.set_num_threads(2)
    folder = Path(args.folder)
    results = json.loads((folder / "results.json").read_text())
    models_dir = ROOT / "runs" / "gpu-zoo" / "models"
    unpacked = unpack(folder, models_dir)
    report = {"results": results, "measured": {}, "shipped": [], "not_shipped": {}}
    names = args.names or [n for n in unpacked if n in PAPER_RESULTS or n.startswith("rrdbnet")]
    for name in names:
        result = results.get(name, {})
        if "error" in result or not (models_dir / name).is_dir():
            report["not_shipped"][name] = "failed on the device: " + result.get("error", "no weights")[-300:]
            continue
        model = load(models_dir / name).float().eval()
        size_mb = (models_dir / name / "model.safetensors").stat().st_size / 1e6
        previous = previous_record(name)
        if args.dry_run or size_mb > args.max_mb or name not in PAPER_RESULTS:
            rows = measure(model, model.scale, args.data_root)
            report["measured"][name] = {d: {"psnr": r["psnr"], "ssim": r["ssim"]} for d, r in rows.items()}
            line = ", ".join(f"{d} {r['psnr']:.2f} dB (was {previous[d]:.2f})" if d in previous else f"{d} {r['psnr']:.2f} dB"
                             for d, r in rows.items())
            reason = ("dry run" if args.dry_run else f"{size_mb:.0f} MB of weights > --max-mb {args.max_mb:g}"
                      if size_mb > args.max_mb else "no paper figures recorded in srhub.pretrained.PAPER_RESULTS")
            print(f"{name}: {line}; not shipped ({reason})")
            report["not_shipped"][name] = reason
            continue
        training = {
            "script": "train/gpu_zoo.py",
            "command": args.command,
            "config": {k: v for k, v in result.items() if k not in ("curve", "teacher", "error")},
            "steps": result["steps"],
            "wall_seconds": result["seconds"],
            "data": training_data(result),
            "validation": "Set5",
            "hardware": f"{result['device']}, PyTorch {result['torch']}",
            "note": curve_note(result, previous_training(name)),
        }
        code = ship(name, model, training, data_root=args.data_root, must_beat=None if args.replace else previous)
        if code == 0:
            report["shipped"].append(name)
        else:
            report["not_shipped"][name] = "does not beat bicubic" if code == 1 else "does not beat its previous record"

    # PISR's claim: the distilled student against the plain FSRCNN with the same data, loss and steps
    report["pisr_vs_plain"] = {}
    for scale in (2, 3, 4):
        pair = {}
        for name in (f"pisr-x{scale}", f"fsrcnn-plain-x{scale}"):
            if (models_dir / name).is_dir() and "error" not in results.get(name, {"error": ""}):
                rows = measure(load(models_dir / name).float().eval(), scale, args.data_root)
                pair[name] = {d: round(r["psnr"], 4) for d, r in rows.items()}
        if len(pair) == 2:
            student, plain = pair.values()
            verdict = all(student[d] > plain[d] for d in student)
            print(f"x{scale}: PISR student {student} vs plain FSRCNN {plain}: "
                  f"{'the student wins' if verdict else 'the student does not win everywhere'}")
            pair["student_wins"] = verdict
        report["pisr_vs_plain"][f"x{scale}"] = pair
    out = ROOT / "runs" / "gpu-zoo" / "report.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"shipped {len(report['shipped'])}: {', '.join(report['shipped']) or 'none'}; report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
