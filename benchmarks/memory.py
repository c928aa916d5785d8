"""Peak memory of ``srhub.upscale`` on the CPU: a 2048x2048 image x4, tiled.

    python benchmarks/memory.py                      # tiled 2048x2048, plus untiled runs to extrapolate
    python benchmarks/memory.py --size 1024 --tile 256 --no-untiled

Each measurement runs in a fresh Python process and reads its peak resident set
size (``resource.getrusage(...).ru_maxrss``), which counts everything the process
touched: PyTorch's CPU allocator, numpy, Pillow and the interpreter. The model is
SRVGGNetCompact (64 features, 16 convolutions), with the converted
``realesr-animevideov3-x4`` weights when they load offline, else random weights
(memory and time do not depend on the weights).

An untiled 2048x2048 run is not attempted (tens of GB of activations on a small
machine); instead untiled runs at smaller sizes are measured and the growth
above the process's baseline is extrapolated linearly in the number of pixels.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(size: int, tile: int, num_convs: int) -> dict:
    import numpy as np
    import torch

    import srhub

    random = srhub.SRVGGNetCompact(scale=4, num_features=64, num_convs=num_convs).eval()
    model, weights = random, f"random (64 features, {num_convs} convs)"
    if num_convs == 16:
        try:
            model, weights = srhub.load("realesr-animevideov3-x4"), "realesr-animevideov3-x4"
        except Exception as error:  # noqa: BLE001 - no converted weights here: random ones cost the same
            weights = f"random (64 features, 16 convs; pretrained weights unavailable: {error})"
    image = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    baseline = _peak_mib()
    start = time.perf_counter()
    out = srhub.upscale(image, model=model, tile=tile, device="cpu")
    seconds = time.perf_counter() - start
    assert out.shape == (size * 4, size * 4, 3) and out.dtype == np.uint8
    return {
        "size": size, "tile": tile, "weights": weights, "threads": torch.get_num_threads(),
        "baseline_mib": baseline, "peak_mib": _peak_mib(), "seconds": seconds,
    }  # fmt: skip


def measure(size: int, tile: int, num_convs: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", "--size", str(size), "--tile", str(tile), "--num-convs", str(num_convs)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="input side in pixels (default 2048)")
    parser.add_argument("--tile", type=int, default=512, help="tile side (default 512)")
    parser.add_argument("--no-untiled", action="store_true", help="skip the untiled runs used to extrapolate")
    parser.add_argument("--num-convs", type=int, default=16,
                        help="convolutions of the SRVGGNetCompact (16 = realesr-animevideov3; fewer: same "
                        "activation sizes, so nearly the same memory, in a fraction of the time)")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.tile, args.num_convs)))
        return

    output_mib = (args.size * 4) ** 2 * 3 * 4 / 2**20
    print(f"upscaling a random {args.size}x{args.size} RGB image x4 on the CPU "
          f"(float32 output buffer alone: {output_mib:.0f} MiB)")  # fmt: skip
    tiled = measure(args.size, args.tile, args.num_convs)
    print(f"model weights: {tiled['weights']}, torch threads: {tiled['threads']}")
    print(f"tiled (tile {args.tile}):   peak RSS {tiled['peak_mib']:7.0f} MiB "
          f"(baseline after loading {tiled['baseline_mib']:.0f} MiB), {tiled['seconds']:.1f} s")  # fmt: skip
    verdict = "under" if tiled["peak_mib"] < 2048 else "OVER"
    print(f"  -> {verdict} the 2 GB (2048 MiB) target")
    if args.no_untiled:
        return
    rows = [measure(side, 0, args.num_convs) for side in (args.size // 8, args.size // 4)]
    for row in rows:
        print(f"untiled {row['size']}x{row['size']}: peak RSS {row['peak_mib']:7.0f} MiB "
              f"(baseline {row['baseline_mib']:.0f} MiB), {row['seconds']:.1f} s")  # fmt: skip
    largest = rows[-1]
    growth = (largest["peak_mib"] - largest["baseline_mib"]) * (args.size / largest["size"]) ** 2
    print(f"untiled {args.size}x{args.size} (extrapolated from {largest['size']}x{largest['size']}, linear in pixels): "
          f"about {largest['baseline_mib'] + growth:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
