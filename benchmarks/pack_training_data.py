"""Pack the training and validation images for ``train/gpu_zoo.py`` into one small folder.

    python benchmarks/pack_training_data.py --out local/gpu-data

The device machine receives the repository's tracked files plus carried git-ignored
folders, 64 MiB in all, so the 291-image set (60 MB of PNG) travels as lossless WebP
(every pixel identical; the script checks it) next to Set5's PNGs (validation) and a
copy of pypng's single-file module (srhub imports it; the device image lacks it).

``--train`` takes several folders (packed together, e.g. train-291 and photos-43) or ``t91``, the
91-image part of train-291 alone (what SRCNN's and ESPCN's 91-image models trained on).

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
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".tif")
# named parts of a shared folder: ``--train t91`` packs Yang et al.'s 91 images alone (the data of
# SRCNN's and ESPCN's 91-image models), the ``t91_*`` files of train-291
SUBSETS = {"t91": ("train-291", "t91_*")}


def training_images(source: str) -> list[Path]:
    """The images ``--train`` names by ``source``: a folder's, or a named subset's (:data:`SUBSETS`)."""
    if Path(source).is_dir():
        paths = sorted(Path(source).iterdir())
    elif source in SUBSETS:
        folder, pattern = SUBSETS[source]
        paths = sorted((DATASETS / folder).glob(pattern))
    else:
        raise SystemExit(f"{source}: not a folder, nor a named subset ({', '.join(SUBSETS)})")
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise SystemExit(f"{source}: no training images there")
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="local/gpu-data")
    parser.add_argument("--train", nargs="+", default=[str(DATASETS / "train-291")],
                        help="training image folders (several: their images together, e.g. train-291 and photos-43), "
                        f"or a named subset of a shared folder ({', '.join(SUBSETS)})")
    parser.add_argument("--val", default=str(DATASETS / "benchmark" / "Set5"))
    parser.add_argument("--limit", type=int, default=None, help="pack only the first N training images (smoke tests)")
    parser.add_argument("--method", type=int, default=4, help="WebP effort 0-6 (4: as small as 6 on these images, 20x faster)")
    args = parser.parse_args()

    sources = [path for source in args.train for path in training_images(source)]
    if len({p.stem for p in sources}) < len(sources):
        raise SystemExit("two training images share a file name; they would overwrite each other")
    out = Path(args.out)
    for sub in ("train", "Set5", "pylib"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
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
