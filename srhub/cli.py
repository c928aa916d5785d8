"""The ``srhub`` command line: one sub-command per job, each a small function.

Sub-commands are listed explicitly in ``main``; each has an ``_add_<name>``
function declaring its arguments and a ``_run_<name>`` function doing the work.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial
from pathlib import Path


def _add_models(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the registered architectures (--pretrained: the named models)")
    parser.add_argument("--pretrained", action="store_true", help="list the pretrained names srhub.load() takes")
    parser.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from .models import ARCHITECTURES

    if args.pretrained:
        from .pretrained import list_pretrained

        for spec in list_pretrained():
            scale = f"x{spec.outscale or spec.scale}"
            print(f"{spec.name:34s} {spec.architecture:18s} {scale:3s} {spec.content:8s} {spec.license:13s} "
                  f"{spec.description}")  # fmt: skip
        return 0
    for name, cls in sorted(ARCHITECTURES.items()):
        print(f"{name:24s} {cls.__name__:24s} {cls.role:13s} {cls.paper.year}  {cls.paper.title}")
    return 0


def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an ncnn .param/.bin or a PyTorch .pth checkpoint into an srhub model folder"
    )
    parser.add_argument("input", help="a .param file (its .bin next to it) or a .pth checkpoint")
    parser.add_argument("-o", "--output", required=True, help="folder to write (config.json, model.safetensors, README.md)")
    parser.add_argument("--name", help="model name for the card (default: the folder's name)")
    parser.add_argument("--license", help="license of the weights for the card, e.g. bsd-3-clause (default: other)")
    parser.add_argument("--overwrite", action="store_true", help="replace the folder if it exists")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with the ncnn package")
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import ConversionError, convert_to_folder

    try:
        folder, converted, parity = convert_to_folder(
            args.input, args.output, name=args.name, license=args.license, overwrite=args.overwrite,
            verify=not args.no_verify,
        )  # fmt: skip
    except (ConversionError, FileExistsError) as error:
        print(f"srhub convert: {error}", file=sys.stderr)
        return 2
    print(f"{converted.source} -> {folder} ({converted.architecture}, {converted.config})")
    for note in converted.notes:
        print(f"note: {note}")
    if parity is not None:
        print(f"ncnn parity on a 32x32 pattern: max {parity[0]:.4f}/255, mean {parity[1]:.5f}/255")
    return 0


def _add_push(subparsers) -> None:
    parser = subparsers.add_parser("push", help="upload a converted model folder (with its card) to the Hugging Face Hub")
    parser.add_argument(
        "folder", help="an srhub model folder (config.json, model.safetensors, README.md), or a shipped trained model's name"
    )
    parser.add_argument("repo_id", help="Hub repo id, owner/name")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--token", help="Hub token (default: the logged-in one / HF_TOKEN)")
    parser.set_defaults(func=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from .convert import push_folder
    from .pretrained import is_shipped, push_shipped

    try:
        if is_shipped(args.folder) and not Path(args.folder).exists():  # a trained model shipped in srhub
            url = push_shipped(args.folder, args.repo_id, private=args.private, token=args.token)
        else:
            url = push_folder(args.folder, args.repo_id, private=args.private, token=args.token)
    except (ValueError, FileNotFoundError) as error:
        print(f"srhub push: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.folder} to {url}")
    return 0


def _add_upscale(subparsers) -> None:
    parser = subparsers.add_parser("upscale", help="upscale image files and folders with a model")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    parser.add_argument("-o", "--output", required=True, help="output folder (or a file name for a single input)")
    parser.add_argument("--model", required=True, help="pretrained name, model folder or Hub repo id")
    parser.add_argument("--tile", type=int, default=512, help="tile side in input pixels; 0 = whole image (default 512)")
    parser.add_argument("--tile-overlap", type=int, default=32, help="overlap of tiles in input pixels (default 32)")
    parser.add_argument("--outscale", type=float, help="final scale factor (default: the model's scale)")
    parser.add_argument("--format", default="same", choices=["same", "png", "jpg", "webp"], help="output format")
    parser.add_argument("--suffix", help="added to output file names (default _x<scale>)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    parser.add_argument("--alpha", default="model", choices=["model", "bicubic"], help="how alpha is upscaled")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: CUDA or MPS if present)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--no-fast", action="store_true", help="run eager PyTorch, not the fast path (srhub.accel)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality (default 95)")
    parser.add_argument("--max-pixels", type=int, default=100_000_000, help="refuse larger inputs (default 1e8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from . import distributed
    from .inference import upscale_files

    state = distributed.world()  # several processes under `accelerate launch`: the files are shared out
    try:
        run = upscale_files if state is None else partial(distributed.upscale_files, state=state)
        report = run(
            args.inputs, args.output, model=args.model, outscale=args.outscale, tile=args.tile,
            tile_overlap=args.tile_overlap, alpha=args.alpha, precision=args.precision, device=args.device,
            format=args.format, suffix=args.suffix, quality=args.quality, max_pixels=args.max_pixels,
            existing="overwrite" if args.overwrite else "skip" if args.skip_existing else "error",
            progress=not args.no_progress, fast=not args.no_fast,
        )  # fmt: skip
    except (ValueError, OSError, KeyError) as error:  # bad options or a model that cannot be loaded
        print(f"srhub upscale: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.finish(state)
    if state is None or state.is_main_process:
        print(f"{len(report.written)} written, {len(report.skipped)} skipped, {len(report.failed)} failed")
    return 1 if report.failed else 0


def _add_video(subparsers) -> None:
    parser = subparsers.add_parser("video", help="upscale a video file (audio, subtitles, chapters and timing kept)")
    parser.add_argument("input", help="a video file (.mp4, .mkv, .mov, ...)")
    parser.add_argument("-o", "--output", required=True, help="the video file to write (.mp4, .mkv, .mov)")
    parser.add_argument("--model", required=True, help="pretrained name, model folder or Hub repo id")
    parser.add_argument("--outscale", type=float, help="final scale factor (default: the model's scale)")
    parser.add_argument("--codec", default="h264", choices=["h264", "h265", "ffv1", "mpeg4"], help="video codec (default h264)")
    parser.add_argument("--crf", type=int, default=18, help="H.264/H.265 constant rate factor, lower is better (default 18)")
    parser.add_argument("--preset", default="medium", help="x264/x265 preset, ultrafast ... veryslow (default medium)")
    parser.add_argument("--lossless", action="store_true", help="write lossless FFV1 (needs .mkv, .avi or .mov)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames through the model at once (default 4)")
    parser.add_argument("--tile", type=int, default=512, help="tile side for RGB models, input pixels; 0 = whole frame")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: CUDA or MPS if present)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--no-fast", action="store_true", help="run eager PyTorch, not the fast path")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_video)


def _run_video(args: argparse.Namespace) -> int:
    from . import distributed

    state = distributed.world()  # several processes under `accelerate launch`: the video is cut at keyframes
    try:
        from .video import upscale_video

        run = upscale_video if state is None else partial(distributed.upscale_video, state=state)
        report = run(
            args.input, args.output, model=args.model, outscale=args.outscale, codec=args.codec, crf=args.crf,
            preset=args.preset, lossless=args.lossless, batch_size=args.batch_size, tile=args.tile,
            precision=args.precision, device=args.device, fast=not args.no_fast, overwrite=args.overwrite,
            progress=not args.no_progress,
        )  # fmt: skip
    except (ValueError, OSError, KeyError, ImportError) as error:  # VideoError is a ValueError
        print(f"srhub video: {error}", file=sys.stderr)
        return 2
    finally:  # Ctrl-C and SIGTERM are answered by main(), with one line; the partial file is already gone
        distributed.finish(state)
    if report is None:  # a helper process; the main one reports
        return 0
    print(
        f"{args.input} -> {report.output}: {report.frames} frames at {report.width}x{report.height}, "
        f"{report.seconds:.1f} s ({report.fps:.1f} fps; {report.path})"
    )
    return 0


def _add_benchmark(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="PSNR/SSIM of models on benchmark sets, measured as in the papers (Y channel, crop = scale)"
    )
    parser.add_argument("--models", nargs="+", required=True, help="'bicubic', pretrained names, model folders or Hub ids")
    parser.add_argument(
        "--datasets", nargs="*", default=[], help="Set5 Set14 B100 Urban100 Manga109 (under --data-root) or HR folders"
    )
    parser.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("HR_DIR", "LR_DIR"), help="an HR/LR folder pair (repeatable)"
    )
    parser.add_argument("--scales", nargs="+", type=int, help="scales to run (default: each model's own scale)")
    parser.add_argument("--data-root", help="folder holding the named sets (default: $SRHUB_DATA_ROOT or ../shared/datasets/benchmark)")
    parser.add_argument("--download", action="store_true", help="fetch missing named sets from the Hugging Face Hub")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--output", help="write PREFIX.json and PREFIX.md")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import format_table, run_benchmark, write_results
    from .data import PairedFolderDataset

    try:
        datasets = list(args.datasets) + [PairedFolderDataset(hr, lr) for hr, lr in args.pair]
        if not datasets:
            raise ValueError("give --datasets and/or --pair")
        rows = run_benchmark(
            args.models, datasets, args.scales, data_root=args.data_root, device=args.device,
            progress=not args.no_progress, download=args.download,
        )  # fmt: skip
    except (ValueError, OSError, KeyError) as error:
        print(f"srhub benchmark: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.output:
        json_path, md_path = write_results(rows, args.output)
        print(f"wrote {json_path} and {md_path}")
    return 0


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX (dynamic batch, height, width), checked against PyTorch")
    parser.add_argument("model", help="pretrained name, model folder or Hub repo id")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch on two other sizes")
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    try:
        result = export_onnx(args.model, args.output, opset=args.opset, verify=not args.no_verify)
    except (ValueError, OSError, KeyError, ImportError) as error:  # ExportError is a ValueError
        print(f"srhub export: {error}", file=sys.stderr)
        return 2
    h, w = result.example_size
    print(f"wrote {result.path} (opset {result.opset}, traced at {h}x{w}, dynamic batch/height/width)")
    for (vh, vw), diff in sorted(result.max_abs.items()):
        print(f"checked against PyTorch at {vh}x{vw}: max abs difference {diff:.2e}")
    return 0


def _add_space(subparsers) -> None:
    parser = subparsers.add_parser("space", help="Hugging Face Space tools")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build", help="write a folder that deploys to a Gradio Space as it is (app, requirements, srhub, card)"
    )
    build.add_argument("folder", help="the folder to write")
    build.add_argument("--space-id", default="srhub/srhub-demo", help="owner/name of the Space, for its card")
    build.add_argument("--overwrite", action="store_true", help="replace an existing Space folder")
    build.set_defaults(func=_run_space_build)


def _run_space_build(args: argparse.Namespace) -> int:
    from .space import SpaceBuildError, build_space

    try:
        folder = build_space(args.folder, overwrite=args.overwrite, space_id=args.space_id)
    except (SpaceBuildError, OSError) as error:
        print(f"srhub space build: {error}", file=sys.stderr)
        return 2
    print(f"wrote {folder}: push it to a Space (sdk: gradio), e.g.")
    print(f"  huggingface-cli upload {args.space_id} {folder} . --repo-type space")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srhub", description="Image super-resolution models, weights and benchmarks.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_models(subparsers)
    _add_convert(subparsers)
    _add_push(subparsers)
    _add_upscale(subparsers)
    _add_video(subparsers)
    _add_benchmark(subparsers)
    _add_export(subparsers)
    _add_space(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that ``finally`` blocks remove partial files."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. Ctrl-C and SIGTERM stop it with one line (exit 130 / 143), and
    the file being written at that moment is removed, never left half-written."""
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return args.func(args)
    except Terminated:
        print(f"srhub {args.command}: terminated; no partial output was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"srhub {args.command}: interrupted; no partial output was left", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
