"""Pack the training and validation images for ``train/gpu_zoo.py`` into one small folder.

    python benchmarks/pack_training_data.py --out local/gpu-data

The device machine receives the repository's tracked files plus carried git-ignored
folders, 64 MiB in all, so the 291-image set (60 MB of PNG) travels as lossless WebP
(every pixel identical; the script checks it) next to Set5's PNGs (validation) and a
copy of pypng's single-file module (srhub imports it; the device image lacks it).

Writes ``<out>/train/*.webp``, ``<out>/Set5/*.png``, ``<out>/pylib/png.py`` and
``<out>/manifest.json`` (file names, sizes and the source folders).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="local/gpu-data")
    parser.add_argument("--train", nargs="+", default=[str(DATASETS / "train-291")],
                        help="training image folders (several: their images together, e.g. train-291 and photos-43)")
    parser.add_argument("--val", default=str(DATASETS / "benchmark" / "Set5"))
    parser.add_argument("--limit", type=int, default=None, help="pack only the first N training images (smoke tests)")
    parser.add_argument("--method", type=int, default=4, help="WebP effort 0-6 (4: as small as 6 on these images, 20x faster)")
    args = parser.parse_args()

    out = Path(args.out)
    for sub in ("train", "Set5", "pylib"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    sources = [p for folder in args.train for p in sorted(Path(folder).iterdir())
               if p.suffix.lower() in (".png", ".bmp", ".jpg", ".tif")]
    if len({p.stem for p in sources}) < len(sources):
        raise SystemExit("two training images share a file name; they would overwrite each other")
    sources = sources[: args.limit] if args.limit else sources
    total = 0
    for path in sources:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        buffer = io.BytesIO()
        rgb.save(buffer, "WEBP", lossless=True, quality=100, method=args.method, exact=True)
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            if not np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(rgb)):
                raise SystemExit(f"{path.name}: WebP round trip is not lossless")
        (out / "train" / f"{path.stem}.webp").write_bytes(buffer.getvalue())
        total += len(buffer.getvalue())
    for path in sorted(Path(args.val).iterdir()):
        if path.suffix.lower() == ".png":
            shutil.copy2(path, out / "Set5" / path.name)
    import png  # pypng, a single pure-python module

    shutil.copy2(png.__file__, out / "pylib" / "png.py")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    manifest = {"train_source": [str(folder) for folder in args.train], "val_source": str(args.val), "train_images": len(sources),
                "train_webp_bytes": total, "folder_bytes": size}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"packed {len(sources)} training images into {total / 1e6:.1f} MB of lossless WebP; "
          f"{out} holds {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
