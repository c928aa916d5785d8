"""Datasets: benchmark sets for evaluation (and, below, training patches).

Benchmark sets are folders of HR images; the LR input is made the way the
papers' MATLAB scripts made it:

    gt = HR cropped to a multiple of the scale ("mod crop", bottom/right)
    lq = imresize(gt, 1/scale)  (MATLAB bicubic with antialiasing, on uint8: an 8-bit LR PNG)

Images stored as grayscale (Set14's bridge) are given as RGB with three equal
channels, so every model sees RGB; the dataset lists their names in
``grayscale`` because the papers measure such images on the gray values
themselves (their scripts skip ``rgb2ycbcr`` for 2-D images).

Known names (``Set5``, ``Set14``, ``B100``, ``Urban100``, ``Manga109``) are
looked up under a data root: ``data_root=``, else the ``SRHUB_DATA_ROOT``
environment variable, else ``../shared/datasets/benchmark`` relative to the
working directory. With ``download=True`` and network access a missing set
comes from the Hugging Face Hub datasets of the super-image project
(``eugenesiow/Set5``, ``eugenesiow/Set14``, ``eugenesiow/BSD100``,
``eugenesiow/Urban100``; their ``data/<name>_HR.tar.gz``); Manga109 is not
redistributed there and must be provided locally.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .degradations import imresize

# --------------------------------------------------------------------------------------
# Benchmark sets
# --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
BENCHMARK_NAMES = ("Set5", "Set14", "B100", "Urban100", "Manga109")
# Folder names under which each set is commonly distributed.
_FOLDER_ALIASES = {
    "Set5": ("Set5", "Set5_HR", "set5"),
    "Set14": ("Set14", "Set14_HR", "set14"),
    "B100": ("B100", "BSD100", "BSDS100", "BSD100_HR", "b100"),
    "Urban100": ("Urban100", "Urban100_HR", "urban100"),
    "Manga109": ("Manga109", "Manga109_HR", "manga109"),
}
# Hugging Face Hub dataset repos (super-image project) holding data/<stem>_HR.tar.gz.
HUB_DATASETS = {
    "Set5": ("eugenesiow/Set5", "Set5"),
    "Set14": ("eugenesiow/Set14", "Set14"),
    "B100": ("eugenesiow/BSD100", "BSD100"),
    "Urban100": ("eugenesiow/Urban100", "Urban100"),
}
_GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16")


class BenchmarkItem(NamedTuple):
    """One evaluation pair: the image's file stem, the LR input and the ground truth (float (3, H, W) in [0, 1])."""

    name: str
    lq: torch.Tensor
    gt: torch.Tensor


def default_data_root() -> Path:
    """``SRHUB_DATA_ROOT`` if set, else ``../shared/datasets/benchmark`` relative to the working directory."""
    env = os.environ.get("SRHUB_DATA_ROOT")
    return Path(env) if env else Path.cwd().parent / "shared" / "datasets" / "benchmark"


def hub_cache_dir() -> Path:
    """Where sets downloaded from the Hub are unpacked (``SRHUB_CACHE`` or ``~/.cache/srhub/benchmark``)."""
    env = os.environ.get("SRHUB_CACHE")
    return Path(env) / "benchmark" if env else Path.home() / ".cache" / "srhub" / "benchmark"


def download_benchmark(name: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch a benchmark set's HR images from the Hugging Face Hub; returns the folder of images."""
    from huggingface_hub import hf_hub_download

    if name not in HUB_DATASETS:
        raise ValueError(f"no Hub source for {name!r}; downloadable: {', '.join(HUB_DATASETS)}")
    repo_id, stem = HUB_DATASETS[name]
    target = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    folder = target / f"{stem}_HR"
    if folder.is_dir() and _list_images(folder):
        return folder
    archive = hf_hub_download(repo_id=repo_id, filename=f"data/{stem}_HR.tar.gz", repo_type="dataset")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")  # "data" refuses absolute paths, links out of target, devices
    if not folder.is_dir():
        raise FileNotFoundError(f"{archive} from {repo_id} did not contain the expected folder {stem}_HR/")
    return folder


def resolve_benchmark(
    root_or_name: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
) -> tuple[str, Path]:
    """``(display name, folder)`` for a known set name or a folder path; a clear error lists where it looked."""
    source = str(root_or_name)
    if os.path.isdir(source):
        return Path(source).name, Path(source)
    matches = [known for known in BENCHMARK_NAMES if known.lower() == source.lower() or source in _FOLDER_ALIASES[known]]
    if not matches:
        raise FileNotFoundError(
            f"{source!r} is neither a folder nor a known benchmark set ({', '.join(BENCHMARK_NAMES)})"
        )
    name = matches[0]
    root = Path(data_root) if data_root is not None else default_data_root()
    tried = [root / alias for alias in _FOLDER_ALIASES[name]]
    if name in HUB_DATASETS:
        tried.append(hub_cache_dir() / f"{HUB_DATASETS[name][1]}_HR")
    for folder in tried:
        if folder.is_dir() and _list_images(folder):
            return name, folder
    if download and name in HUB_DATASETS:
        return name, download_benchmark(name)
    hint = (
        f"pass download=True (CLI: --download) to fetch it from the Hub dataset {HUB_DATASETS[name][0]}"
        if name in HUB_DATASETS
        else "it is not on the Hub; put its HR images in one of these folders"
    )
    raise FileNotFoundError(
        f"benchmark set {name} not found; looked in: {', '.join(str(path) for path in tried)}; "
        f"set data_root / SRHUB_DATA_ROOT, or {hint}"
    )


def _list_images(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())


def _is_grayscale(path: Path) -> bool:
    with Image.open(path) as image:  # reads the header only
        return image.mode in _GRAYSCALE_MODES


def _read_uint8(path: Path) -> tuple[torch.Tensor, bool]:
    """A (3, H, W) uint8 tensor (gray repeated on 3 channels) and whether the file is grayscale."""
    try:
        with Image.open(path) as image:
            grayscale = image.mode in _GRAYSCALE_MODES
            image = image.convert("L" if grayscale else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    if grayscale:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), grayscale


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so height and width are multiples of ``scale`` (MATLAB ``modcrop``)."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def _to_float(image: torch.Tensor) -> torch.Tensor:
    return image.to(torch.float32) / 255.0


class BenchmarkDataset(Dataset):
    """HR images of a benchmark set with bicubic LR made on the fly.

    Args:
        root_or_name: a known set name (``Set5``, ``Set14``, ``B100``, ``Urban100``,
            ``Manga109``) or a folder of HR images.
        scale: 2, 3, 4 (any integer >= 2).
        data_root: where known names are looked up (see :func:`default_data_root`).
        download: fetch a missing known set from the Hugging Face Hub.

    Items are :class:`BenchmarkItem` ``(name, lq, gt)``; names of grayscale images
    are in ``self.grayscale``.
    """

    def __init__(
        self,
        root_or_name: str | os.PathLike,
        *,
        scale: int,
        data_root: str | os.PathLike | None = None,
        download: bool = False,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
        self.scale = scale
        self.name, self.folder = resolve_benchmark(root_or_name, data_root=data_root, download=download)
        self.files = _list_images(self.folder)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        self.grayscale = frozenset(path.stem for path in self.files if _is_grayscale(path))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> BenchmarkItem:
        path = self.files[index]
        hr, _ = _read_uint8(path)
        gt = mod_crop(hr, self.scale)
        if min(gt.shape[-2:]) < self.scale:
            raise ValueError(f"{path} ({tuple(hr.shape[-2:])}) is smaller than the scale {self.scale}")
        lq = imresize(gt, scale=1 / self.scale)
        return BenchmarkItem(path.stem, _to_float(lq), _to_float(gt))


class PairedFolderDataset(Dataset):
    """HR/LR pairs from two folders, matched by file stem.

    An LR file may carry a scale suffix (``baby.png``, ``baby_x4.png``, ``babyx4.png``
    all match HR ``baby.png``). The scale is read from the sizes (it must be one
    integer for all pairs) unless given; HR larger than ``LR * scale`` by less
    than the scale is mod-cropped, any other mismatch is an error.
    """

    def __init__(self, hr_dir: str | os.PathLike, lr_dir: str | os.PathLike, *, scale: int | None = None) -> None:
        self.hr_dir, self.lr_dir = Path(hr_dir), Path(lr_dir)
        for label, folder in (("HR", self.hr_dir), ("LR", self.lr_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{label} folder not found: {folder}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.name = self.hr_dir.name
        lr_by_stem = {}
        for path in _list_images(self.lr_dir):
            stem = re.sub(r"_?[xX]\d+$", "", path.stem)
            lr_by_stem.setdefault(path.stem, path)
            lr_by_stem.setdefault(stem, path)
        self.pairs = []
        for hr_path in _list_images(self.hr_dir):
            if hr_path.stem not in lr_by_stem:
                raise FileNotFoundError(f"no LR image for {hr_path.name} in {self.lr_dir}")
            self.pairs.append((hr_path, lr_by_stem[hr_path.stem]))
        if not self.pairs:
            raise FileNotFoundError(f"no images in {self.hr_dir}")
        self.scale = scale if scale is not None else self._infer_scale()
        self.grayscale = frozenset(hr_path.stem for hr_path, _ in self.pairs if _is_grayscale(hr_path))

    def _infer_scale(self) -> int:
        scales = set()
        for hr_path, lr_path in self.pairs:
            with Image.open(hr_path) as hr, Image.open(lr_path) as lr:
                (hr_w, hr_h), (lr_w, lr_h) = hr.size, lr.size
            scales.add((hr_h // lr_h, hr_w // lr_w))
        if len(scales) != 1 or len({s for pair in scales for s in pair}) != 1:
            raise ValueError(f"HR/LR size ratios in {self.hr_dir} and {self.lr_dir} are not one integer: {sorted(scales)}")
        return scales.pop()[0]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> BenchmarkItem:
        hr_path, lr_path = self.pairs[index]
        gt, _ = _read_uint8(hr_path)
        lq, _ = _read_uint8(lr_path)
        height, width = (size * self.scale for size in lq.shape[-2:])
        if not (height <= gt.shape[-2] < height + self.scale and width <= gt.shape[-1] < width + self.scale):
            raise ValueError(
                f"{hr_path.name} is {tuple(gt.shape[-2:])} but LR {lr_path.name} x{self.scale} is {(height, width)}"
            )
        return BenchmarkItem(hr_path.stem, _to_float(lq), _to_float(gt[..., :height, :width]))


# --------------------------------------------------------------------------------------
# Training patches
# --------------------------------------------------------------------------------------


def training_images(source: str | os.PathLike) -> list[Path]:
    """Image files for training: every image under a folder (recursively), or, for
    ``hf://datasets/<owner>/<name>`` with network access, the images (and the images inside
    ``.tar``/``.tar.gz``/``.zip`` archives) of that Hub dataset repo, e.g. a DIV2K HR upload."""
    source = str(source)
    if source.startswith("hf://datasets/"):
        folder = _download_training_repo(source.removeprefix("hf://datasets/"))
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"training image folder not found: {folder} (or pass hf://datasets/<repo_id>)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def _download_training_repo(repo_id: str) -> Path:
    import zipfile

    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, repo_type="dataset", cache_dir=hub_cache_dir()))
    extracted = hub_cache_dir() / "extracted" / repo_id.replace("/", "--")
    if not extracted.is_dir():
        tmp = extracted.with_name(extracted.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for archive in sorted(folder.rglob("*")):
            if archive.name.endswith((".tar", ".tar.gz", ".tgz")):
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
            elif archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(tmp)
        os.replace(tmp, extracted)
    return folder if not any(extracted.iterdir()) else extracted


class PatchDataset(Dataset):
    """Random HR patches with flips and rotations, and their bicubic LR made on the fly.

    Item ``i`` is a function of ``(seed, i)`` only (the image, the crop and the
    augmentation are drawn from a generator seeded with both), so a run reads the same
    patches whatever the number of workers or processes, and resuming at step ``n`` only
    needs to skip ``n`` batches of indices.

    With ``cache`` the LR of each whole (mod-cropped) image is made once and patches are
    cut at aligned positions from both, as with DIV2K's released LR images; without it each
    HR patch is downscaled on its own (slower; borders see mirrored pixels instead of the
    neighbours). Flips and transposes commute with the integer-factor bicubic, so the
    pairs stay aligned after augmentation.

    Args:
        images: image files (see :func:`training_images`).
        scale: LR = ``imresize(gt, 1/scale)`` on 8-bit values, as the benchmarks make it.
        patch_size: HR patch side, a multiple of ``scale``.
        length: number of items (steps x batch size for a run that reads each index once).
        seed: base seed of the patch draws.
        augment: random horizontal flip, vertical flip and transpose (the 8 dihedral transforms).
        with_lq: also return the bicubic LR (off for pipelines that degrade ``gt`` themselves).
        cache: decode every image once and keep it in memory (uint8).
        lq_images: LR files paired with ``images`` (real camera pairs such as RealSR's, in the
            same order, each ``1/scale`` of its HR's size after mod-crop); patches are cut
            at aligned positions from both. None: bicubic LR as above. Needs ``cache``.

    Items are dicts ``{"gt": (3, P, P)}`` plus ``"lq": (3, P/s, P/s)``, float in [0, 1].
    """

    def __init__(
        self,
        images: list[Path],
        *,
        scale: int,
        patch_size: int,
        length: int,
        seed: int = 0,
        augment: bool = True,
        with_lq: bool = True,
        cache: bool = True,
        lq_images: list[Path] | None = None,
    ) -> None:
        if lq_images is not None and (not cache or not with_lq or len(lq_images) != len(images)):
            raise ValueError("lq_images needs cache=True, with_lq=True and one LR file per HR image")
        if scale < 1 or patch_size < scale or patch_size % scale:
            raise ValueError(f"patch_size ({patch_size}) must be a positive multiple of scale ({scale})")
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if not images:
            raise ValueError("no training images given")
        self.images, self.scale, self.patch_size = [Path(p) for p in images], scale, patch_size
        self.length, self.seed, self.augment, self.with_lq = length, seed, augment, with_lq
        self.cache = [mod_crop(_read_uint8(p)[0], scale) for p in self.images] if cache else None
        self.lq_cache = None
        if lq_images is not None:
            self.lq_cache = [_read_uint8(Path(p))[0] for p in lq_images]
            for path, hr, lq in zip(lq_images, self.cache, self.lq_cache):
                if tuple(hr.shape[-2:]) != (lq.shape[-2] * scale, lq.shape[-1] * scale):
                    raise ValueError(f"LR {path} x{scale} is {tuple(s * scale for s in lq.shape[-2:])}, its HR {tuple(hr.shape[-2:])}")
        elif self.cache is not None and with_lq:
            self.lq_cache = [imresize(image, scale=1 / scale) for image in self.cache]
        for index, path in enumerate(self.images):
            if self.cache is not None:
                height, width = self.cache[index].shape[-2:]
            else:
                with Image.open(path) as image:
                    width, height = image.size
            if min(height, width) < patch_size:
                raise ValueError(f"{path} ({width}x{height}) is smaller than the patch size {patch_size}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + index) % 2**63)

        def draw(high: int) -> int:
            return int(torch.randint(high, (), generator=generator))

        which = draw(len(self.images))
        image = self.cache[which] if self.cache is not None else _read_uint8(self.images[which])[0]
        s, lq_size = self.scale, self.patch_size // self.scale
        height, width = image.shape[-2:]
        top, left = draw(height // s - lq_size + 1) * s, draw(width // s - lq_size + 1) * s
        patches = {"gt": image[:, top : top + self.patch_size, left : left + self.patch_size]}
        if self.lq_cache is not None:
            patches["lq"] = self.lq_cache[which][:, top // s : top // s + lq_size, left // s : left // s + lq_size]
        elif self.with_lq:
            patches["lq"] = imresize(patches["gt"].contiguous(), scale=1 / s)
        if self.augment:
            hflip, vflip, transpose = draw(2), draw(2), draw(2)
            for key, patch in patches.items():
                patch = patch.flip(-1) if hflip else patch
                patch = patch.flip(-2) if vflip else patch
                patches[key] = patch.transpose(-1, -2) if transpose else patch
        return {key: _to_float(patch.contiguous()) for key, patch in patches.items()}
