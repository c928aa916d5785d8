"""Resource figures of issue 14: what a real deployment meets, measured from outside.

Four checks, each printed as a table (run all, or pick with flags):

``--memory``     the app (``python app.py``, real pretrained models) answers the largest
                 requests it allows (results of ``SRHUB_APP_MAX_OUTPUT_PIXELS``); for each,
                 the server's peak resident set above its level before the request
                 (/proc/<pid>/status VmHWM, reset through /proc/<pid>/clear_refs).
``--disk``       N requests (default 500) of different small images through
                 ``gradio_client``; disk use under the server's temp folders (Gradio's
                 cache and srhub's results) before, during and after.
``--first-call`` ``srhub upscale`` of a 96x96 image in new processes: with an empty cache
                 (export and compile), then in a new process with the cache filled; the
                 first call's seconds against a warm call's in the same process.
``--bombs``      seconds to refuse a config bomb (``srhub.load`` and the CLI) and a
                 checkpoint bomb (``srhub convert``).

    python benchmarks/app_resources.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/app_resources.py --disk --requests 100

Run it on an otherwise idle machine; the CPU model and thread count are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srhub.accel import cpu_description

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_load import free_port, start_app, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]




def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def folder_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            try:
                if path.is_file():
                    total += path.stat().st_size
            except FileNotFoundError:
                pass
    return total


class App:
    """``python app.py`` on a free port, with its own temp folder (TMPDIR and GRADIO_TEMP_DIR)."""

    def __init__(self, work: Path, **env: str) -> None:
        self.tmp = work / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = work / "app.log"
        self.process = start_app(self.port, None, self.log, env={
            "GRADIO_TEMP_DIR": str(self.tmp / "gradio"), "TMPDIR": str(self.tmp), "HF_HUB_OFFLINE": "1", **env,
        })  # fmt: skip
        wait_ready(self.process, self.url, self.log, timeout=240)
        from gradio_client import Client

        self.client = Client(self.url, verbose=False, analytics_enabled=False, download_files=str(work / "downloads"))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------------- memory
def check_memory(work: Path) -> None:
    from gradio_client import handle_file

    limit = int(os.environ.get("SRHUB_APP_MAX_OUTPUT_PIXELS", 4096 * 4096))
    side = int(limit**0.5)
    cases = [  # (model, input side, outscale): each gives a side x side result, the largest allowed
        ("fsrcnn-x2", side // 2, 0),
        ("fsrcnn-x2", side // 8, 8),
        ("realesr-animevideov3-x4", side // 4, 0),
        ("bsrn-s-x2", side // 2, 0),
    ]
    rng = np.random.default_rng(0)
    photo = Image.open(ROOT / "examples" / "mountain.png").convert("RGB")
    app = App(work / "memory")
    try:
        print(f"\n## Peak memory of the largest allowed requests (limit {limit / 1e6:.1f} Mpx of result)\n")
        print("| model | input | outscale | result | seconds | RSS before MiB | peak MiB | peak increase MiB |")
        print("|---|---|---:|---|---:|---:|---:|---:|")
        for model, in_side, outscale in cases:
            image = photo.resize((in_side, in_side), Image.Resampling.BICUBIC)
            noise = rng.integers(-8, 8, (in_side, in_side, 3))
            image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
            path = work / f"in-{in_side}.png"
            image.save(path)
            app.client.predict(handle_file(str(ROOT / "examples" / "cups.png")), model=model, api_name="/upscale")  # load
            time.sleep(1)
            before = status(app.process.pid)["VmRSS"]
            reset_peak(app.process.pid)
            start = time.perf_counter()
            _, png, info = app.client.predict(handle_file(str(path)), model=model, outscale=outscale, api_name="/upscale")
            seconds = time.perf_counter() - start
            peak = status(app.process.pid)["VmHWM"]
            w, h = info["output_size"]
            print(
                f"| {model} | {in_side}x{in_side} | {outscale or '-'} | {w}x{h} | {seconds:.1f} | {before / 1024:.0f} | "
                f"{peak / 1024:.0f} | {(peak - before) / 1024:.0f} |"
            )
        over = Image.new("RGB", (side // 8 + 8, side // 8 + 8))  # an allowed upload whose x8 result is too large
        over.save(work / "over.png")
        start = time.perf_counter()
        try:
            app.client.predict(handle_file(str(work / "over.png")), model="fsrcnn-x2", outscale=8, api_name="/upscale")
            print("over the limit: ACCEPTED (unexpected)")
        except Exception as error:  # noqa: BLE001 - the AppError carries the app's message
            print(f"\n{side // 8 + 8}x{side // 8 + 8} at outscale 8 (over the limit): refused in {time.perf_counter() - start:.2f} s: {str(error)[:160]}")
    finally:
        app.close()


# ---------------------------------------------------------------------- disk
def check_disk(work: Path, requests: int, cache_seconds: int) -> None:
    from gradio_client import handle_file

    app = App(work / "disk", SRHUB_APP_CACHE_SECONDS=str(cache_seconds), SRHUB_APP_KEEP_SECONDS="20")
    rng = np.random.default_rng(1)
    inputs = work / "disk-inputs"
    inputs.mkdir(exist_ok=True)
    try:
        print(f"\n## Disk under the app's temp folders over {requests} requests (Gradio cache swept after {cache_seconds} s)\n")
        print("| requests | seconds | temp folders MiB | files |")
        print("|---:|---:|---:|---:|")
        start = time.perf_counter()

        def report(done: int) -> None:
            files = sum(1 for p in app.tmp.rglob("*") if p.is_file())
            print(f"| {done} | {time.perf_counter() - start:.0f} | {folder_bytes(app.tmp) / 2**20:.1f} | {files} |", flush=True)

        report(0)
        for index in range(1, requests + 1):
            path = inputs / f"{index % 50}.png"  # 50 different uploads, each new content
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
            app.client.predict(handle_file(str(path)), model="fsrcnn-x2", api_name="/upscale")
            if index % (requests // 5 or 1) == 0:
                report(index)
        time.sleep(cache_seconds + cache_seconds // 4 + 5)
        report(requests)
        print(f"(after waiting {cache_seconds + cache_seconds // 4 + 5} s with no requests)")
    finally:
        app.close()


# ---------------------------------------------------------------------- first call
_FIRST_CALL = r"""
import json, sys, time
t0 = time.perf_counter()
import srhub
from srhub.inference import upscale_files
t1 = time.perf_counter()
model = srhub.load(sys.argv[3])
t2 = time.perf_counter()
times = []
for index in range(3):
    start = time.perf_counter()
    upscale_files([sys.argv[1]], sys.argv[2] + f"/out{index}.png", model=model, progress=False, existing="overwrite")
    times.append(time.perf_counter() - start)
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "calls": times}))
"""


def check_first_call(work: Path, models: list[str]) -> None:
    image = work / "in96.png"
    Image.open(ROOT / "examples" / "dogs.png").convert("RGB").crop((0, 0, 96, 96)).save(image)
    print("\n## First call in a new process (upscale_files, as `srhub upscale` runs it, on a loaded model; 96x96 input)\n")
    print("| model | cache | import s | load s | first call s | warm call s | first / warm | whole `srhub upscale` s, run after (cache filled) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model in models:
        cache = work / f"cache-{model}"
        env = {**os.environ, "SRHUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        # Converted weights are not what is measured: convert them first, then empty the graph caches.
        subprocess.run([sys.executable, "-c", f"import srhub; srhub.load({model!r})"], env=env, check=True, timeout=600)
        for sub in ("onnx", "openvino"):
            shutil.rmtree(cache / sub, ignore_errors=True)
        for label in ("empty", "filled", "filled"):
            done = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL, str(image), str(work), model],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if done.returncode:
                print(f"| {model} | {label} | failed: {done.stderr[-300:]} |")
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            first, warm = figures["calls"][0], min(figures["calls"][1:])
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "srhub.cli", "upscale", str(image), "-o", str(work / "cli.png"), "--model", model,
                 "--overwrite", "--no-progress"],
                env=env, capture_output=True, timeout=600, check=True,
            )  # fmt: skip
            whole = time.perf_counter() - start
            print(
                f"| {model} | {label} | {figures['import']:.2f} | {figures['load']:.2f} | {first:.2f} | {warm:.2f} | "
                f"{first / warm:.2f} | {whole:.2f} |",
                flush=True,
            )


# ---------------------------------------------------------------------- bombs
def check_bombs(work: Path) -> None:
    import torch

    import srhub
    from srhub.models import WeightsError, get_model_class

    print("\n## Time to refuse hostile files\n")
    print("| file | door | outcome | seconds |")
    print("|---|---|---|---:|")
    folder = work / "config-bomb"
    shutil.rmtree(folder, ignore_errors=True)
    get_model_class("srvggnet-compact")(scale=2, num_features=4, num_convs=1).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_convs": 1_000_000_000}))
    start = time.perf_counter()
    try:
        srhub.load(folder)
        outcome = "LOADED (unexpected)"
    except WeightsError as error:
        outcome = f"WeightsError: {str(error)[:70]}..."
    print(f"| config.json num_convs=1e9 | srhub.load | {outcome} | {time.perf_counter() - start:.4f} |")
    Image.new("RGB", (16, 16)).save(work / "tiny.png")
    for label, path, args in [
        ("config.json num_convs=1e9", folder, ["upscale", str(work / "tiny.png"), "-o", str(work / "t.png"), "--model", str(folder)]),
    ]:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, timeout=120)
        print(f"| {label} | srhub CLI (whole process) | exit {done.returncode}: {done.stderr.strip()[:70]} | {time.perf_counter() - start:.2f} |")
    bomb = work / "bomb.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1).expand(1_000_000, 1_000_000)}}, bomb)
    text = work / "notes.pth"
    text.write_text("hello, I am not a checkpoint\n" * 4)
    for label, path in [(f"expanded-zero .pth ({bomb.stat().st_size} bytes)", bomb), ("text file named .pth", text)]:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "srhub.cli", "convert", str(path), "-o", str(work / "converted"), "--overwrite"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            outcome = f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:70] if done.stderr.strip() else ''}"
        except subprocess.TimeoutExpired:
            outcome = "TIMED OUT (120 s)"
        print(f"| {label} | srhub convert (whole process) | {outcome} | {time.perf_counter() - start:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--disk", action="store_true")
    parser.add_argument("--first-call", action="store_true")
    parser.add_argument("--bombs", action="store_true")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cache-seconds", type=int, default=60, help="SRHUB_APP_CACHE_SECONDS for --disk")
    parser.add_argument("--models", nargs="+", default=["realesrgan-x4plus", "realesr-animevideov3-x4", "fsrcnn-x2"])
    args = parser.parse_args()
    every = not (args.memory or args.disk or args.first_call or args.bombs)
    import torch

    print(f"CPU: {cpu_description()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="srhub-resources-") as folder:
        work = Path(folder)
        if every or args.bombs:
            check_bombs(work)
        if every or args.first_call:
            check_first_call(work, args.models)
        if every or args.memory:
            check_memory(work)
        if every or args.disk:
            check_disk(work, args.requests, args.cache_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
