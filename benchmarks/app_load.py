"""Load check of the demo: N concurrent gradio_client calls against ``python app.py``.

Starts the app on a free local port, warms it up with one call, then fires
``--clients`` threads at once, each with its own ``gradio_client.Client``,
each calling ``/upscale`` ``--rounds`` times on its own random small image.
Prints how many calls succeeded, their latency, and the server's memory
(resident set before the burst, after it, and the process's peak, from
/proc/<pid>/status on Linux). Exits non-zero if a call failed or the
memory grew by more than ``--max-growth-mib``.

    python benchmarks/app_load.py                          # the smallest pretrained model
    python benchmarks/app_load.py --models tests/tiny      # a folder of srhub model folders

The queue lets ``SRHUB_APP_CONCURRENCY`` (default 1) runs work at once; the
others wait, which is what keeps memory bounded.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def memory_mib(pid: int) -> tuple[float, float]:
    """(current resident set, peak resident set) of a process in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int, models: str | None, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python app.py`` on ``port``, logging to ``log_path``; ``models`` (a folder of model folders) or the
    pretrained models; ``env`` is added to the environment."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), **(env or {})}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env.pop("SRHUB_APP_MODELS", None)
    if models:
        env["SRHUB_APP_MODELS"] = str(Path(models).resolve())
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"app.py did not start (exit {process.poll()}):\n{log_path.read_text()[-3000:]}"
                ) from None
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="calls per client")
    parser.add_argument("--size", type=int, default=64, help="side of the random test images")
    parser.add_argument("--models", default=None, help="SRHUB_APP_MODELS folder (default: pretrained models)")
    parser.add_argument("--model", default=None, help="model name (default: the app's default, the smallest)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole burst")
    parser.add_argument("--max-growth-mib", type=float, default=1024)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="srhub-app-load-"))
    rng = np.random.default_rng(0)
    images = []
    for i in range(args.clients):
        path = work / f"input{i}.png"
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(path)
        images.append(path)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = work / "app.log"
    process = start_app(port, args.models, log_path)
    try:
        wait_ready(process, url, log_path, timeout=120)
        model = {"model": args.model} if args.model else {}
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(work / "warmup"))
        _, _, info = client.predict(handle_file(str(images[0])), api_name="/upscale", **model)  # warm-up: model loads
        rss_before, _ = memory_mib(process.pid)

        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(memory_mib(process.pid)[0])
                time.sleep(0.05)

        def one_client(index: int) -> list[float]:
            own = Client(url, verbose=False, analytics_enabled=False, download_files=str(work / f"out{index}"))
            latencies = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                _, png, info = own.predict(handle_file(str(images[index])), api_name="/upscale", **model)
                latencies.append(time.perf_counter() - start)
                if Image.open(png).size != tuple(info["output_size"]):
                    raise AssertionError(f"client {index}: the PNG does not have the reported size")
            return latencies

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        latencies, failures = [], []
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(one_client, i) for i in range(args.clients)]
            try:
                for future in as_completed(futures, timeout=args.timeout):
                    try:
                        latencies += future.result()
                    except Exception as error:  # noqa: BLE001 - report every failure, keep going
                        failures.append(f"{type(error).__name__}: {error}")
            except TimeoutError:
                failures.append(f"burst not finished after {args.timeout:.0f} s")
                for future in futures:
                    future.cancel()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        rss_after, rss_peak = memory_mib(process.pid)
        burst_peak = max(samples, default=rss_after)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()

    calls = args.clients * args.rounds
    print(
        f"model: {info['model']} on {info['device']}, {args.size}x{args.size} inputs, "
        f"{args.clients} clients x {args.rounds} calls"
    )
    print(f"succeeded: {len(latencies)}/{calls} in {wall:.1f} s wall")
    if latencies:
        print(
            f"latency (s): min {min(latencies):.2f}, median {statistics.median(latencies):.2f}, "
            f"max {max(latencies):.2f}"
        )
    print(
        f"server RSS (MiB): before {rss_before:.0f}, peak during burst {burst_peak:.0f} "
        f"(+{burst_peak - rss_before:.0f}), after {rss_after:.0f}, process peak (VmHWM) {rss_peak:.0f}"
    )
    for failure in failures[:5]:
        print("failure:", failure)
    ok = not failures and len(latencies) == calls and burst_peak - rss_before <= args.max_growth_mib
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
