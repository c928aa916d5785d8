"""The one base class every srhub model derives from.

``SRModel`` joins ``torch.nn.Module`` with ``huggingface_hub.PyTorchModelHubMixin``
and adds only what every architecture shares:

* Hub metadata (library name, pipeline tag, tags, license) and a model-card
  template read from ``model_cards/template.md``;
* ``save_pretrained`` writing ``config.json`` with the architecture name and
  every constructor argument, next to ``model.safetensors`` and a generated card;
* strict, safe loading: safetensors only, every key and shape checked, clear
  :class:`WeightsError` messages instead of the mixin's silent non-strict load;
* a few declared properties (``scale``, ``size_multiple``, half/bf16 support)
  that inference code reads instead of guessing.

Subclasses set the class attributes ``architecture`` (registry name) and
``paper``; generators set ``self.scale`` in their constructor.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.repocard_data import EvalResult
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

#: The most parameters a model built from a ``config.json`` may have (a hostile config must
#: be refused before anything is allocated; the largest srhub model has 17 M).
MAX_PARAMETERS = 1_000_000_000
#: Ranges of integer constructor arguments accepted from a ``config.json``, by name; other
#: integer arguments get ``_DEFAULT_INT_RANGE``. They bound the work of building the model
#: at all (a billion layers would hang before any parameter count could be taken).
CONFIG_INT_RANGES: dict[str, tuple[int, int]] = {
    "scale": (1, 16),
    "in_channels": (1, 64),
    "out_channels": (1, 64),
    "num_blocks": (0, 256),
    "num_convs": (0, 256),
    "num_mapping_layers": (0, 256),
    "input_size": (8, 4096),
}
_DEFAULT_INT_RANGE = (0, 4096)


class WeightsError(ValueError):
    """Weights that cannot be loaded into a model: unreadable, missing keys, extra keys or wrong shapes."""


@dataclass(frozen=True)
class Paper:
    """Where an architecture comes from; rendered into model cards and the README."""

    title: str
    authors: str
    year: int
    url: str
    bibtex: str


def _card_template() -> str:
    return resources.files("srhub.model_cards").joinpath("template.md").read_text(encoding="utf-8")


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Raise :class:`WeightsError` unless ``state_dict`` fits ``model`` exactly (keys and shapes)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key}: file has {tuple(state_dict[key].shape)}, model expects {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(
            f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    if wrong_shape:
        problems.append(f"wrong shapes ({len(wrong_shape)}): {'; '.join(wrong_shape[:4])}")
    if problems:
        raise WeightsError(
            f"weights from {source} do not fit {type(model).__name__} with this config: " + " | ".join(problems)
        )


def load_safetensors(model: nn.Module, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> None:
    """Load a ``.safetensors`` file into ``model`` strictly, with clear errors for bad files.

    A model built on the meta device (see :func:`build_empty`) takes the file's tensors as they are.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    try:
        state_dict = load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path} is not a readable safetensors file ({error})") from error
    check_state_dict(model, state_dict, source=path)
    # Tensors read from the file start wherever the header ends; kernels pick other code paths for
    # memory not aligned to 64 bytes, so a loaded model's outputs would differ from the saved one's
    # in the last bit. Aligned copies keep save -> load bitwise identical.
    state_dict = {key: value.clone() if value.data_ptr() % 64 else value for key, value in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=_is_meta(model))


def _is_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


class _MetaDevice(torch.overrides.TorchFunctionMode):
    """``torch.device("meta")`` that also skips in-place fills (initialisers) of meta tensors.

    A model built here is only counted or loaded into, so its random initialisation is never
    used; on the meta device it would still be dispatched through PyTorch's reference
    decompositions, whose first use imports ``torch._refs`` (about a second). Per thread,
    like every torch function mode.
    """

    _FILLS = frozenset(
        getattr(torch.Tensor, name)
        for name in ("normal_", "uniform_", "fill_", "zero_", "copy_", "bernoulli_", "exponential_", "random_")
    )

    def __init__(self) -> None:
        super().__init__()
        self.device = torch.device("meta")

    def __enter__(self):
        self.device.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        self.device.__exit__(*exc)
        return result

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._FILLS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def meta_model(cls: type[nn.Module], config: dict[str, Any]) -> nn.Module:
    """``cls(**config)`` on the meta device with its initialisers skipped: shapes only, no memory."""
    with _MetaDevice():
        return cls(**config)


def check_config(
    cls: type[nn.Module],
    config: dict[str, Any],
    *,
    source: str,
    ranges: dict[str, tuple[int, int]] = CONFIG_INT_RANGES,
) -> nn.Module:
    """Refuse a config that would build an absurd model, before anything is built; return the
    model built on the meta device (no memory) for loading into, see :func:`build_empty`.

    Integer arguments must lie in ``ranges`` (by name; others in 0..4096), floats must be
    finite, and the meta model may have at most :data:`MAX_PARAMETERS` parameters. Raises
    :class:`WeightsError` naming the argument; ``source`` starts each message (e.g.
    ``"config.json of 'org/model'"``).
    """
    import math

    for key, value in config.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            low, high = ranges.get(key, _DEFAULT_INT_RANGE)
            if not low <= value <= high:
                raise WeightsError(
                    f"{source}: {key}={value} is outside the range srhub accepts for {cls.__name__} ({low}..{high})"
                )
        elif isinstance(value, float):
            if not math.isfinite(value) or abs(value) > 1e6:
                raise WeightsError(f"{source}: {key}={value} is not a sane number")
        elif isinstance(value, (list, tuple, dict)):
            if len(value) > 64:
                raise WeightsError(f"{source}: {key} holds {len(value)} items; at most 64")
    try:
        probe = meta_model(cls, config)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{source} does not describe a valid {cls.__name__}: {error}") from error
    count = sum(p.numel() for p in probe.parameters()) + sum(b.numel() for b in probe.buffers())
    if count > MAX_PARAMETERS:
        raise WeightsError(
            f"{source} describes a {cls.__name__} of {count:,} parameters; srhub refuses more than {MAX_PARAMETERS:,}"
        )
    return probe


def build_empty(cls: type[nn.Module], config: dict[str, Any], *, meta: nn.Module | None = None) -> nn.Module:
    """``cls(**config)`` with its parameters on the meta device, for loading weights into.

    Skips the random initialisation the weights would overwrite (a second for RRDBNet).
    ``meta`` is that model if already built (:func:`check_config` returns it).
    Architectures with non-persistent buffers (constants the weights file does not
    hold) are built normally. The meta device context is per thread.
    """
    model = meta if meta is not None else meta_model(cls, config)
    persistent = set(model.state_dict())
    if any(name not in persistent for name, _ in model.named_buffers()):
        return cls(**config)
    return model


class SRModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="srhub",
    pipeline_tag="image-to-image",
    license="apache-2.0",
    tags=["super-resolution", "srhub"],
    repo_url="https://github.com/srhub/srhub",
    model_card_template="{{ card_data }}",  # replaced by model_cards/template.md in generate_model_card
):
    """Base class of all srhub models (generators and discriminators)."""

    architecture: ClassVar[str] = ""
    paper: ClassVar[Paper]
    #: "generator" (``forward(lq) -> sr``), "discriminator" (``forward(image) -> logits``)
    #: or "teacher" (``forward(gt) -> reconstruction``, for distillation).
    role: ClassVar[str] = "generator"
    #: Upscaling factors the architecture can be built for.
    supported_scales: ClassVar[tuple[int, ...]] = (2, 3, 4)
    #: Whether fp16 / bf16 inference is accurate for this architecture.
    supports_half: ClassVar[bool] = True
    supports_bfloat16: ClassVar[bool] = True

    scale: int = 1

    # ------------------------------------------------------------------ properties
    @property
    def size_multiple(self) -> int:
        """Input height and width must be a multiple of this (inference pads to it)."""
        return 1

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments plus the architecture name, as written to ``config.json``."""
        return {**(self._hub_mixin_config or {}), "architecture": self.architecture}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ saving
    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and a generated ``README.md`` model card.

        ``model_card_kwargs`` fills the card (``model_name``, ``summary``, ``weights_source``,
        ``training``, ``results``, ``datasets``, ``license``, ``repo_id``); the card is regenerated on every save.
        """
        save_directory = Path(save_directory)
        config = {**(config if config is not None else self.config), "architecture": self.architecture}
        card_kwargs = dict(model_card_kwargs or {})
        card_kwargs.setdefault("model_name", save_directory.name)
        card_kwargs.setdefault("repo_id", repo_id or card_kwargs["model_name"])
        (save_directory / "README.md").unlink(missing_ok=True)
        result = super().save_pretrained(
            save_directory,
            config=config,
            repo_id=repo_id,
            push_to_hub=push_to_hub,
            model_card_kwargs=card_kwargs,
            **push_to_hub_kwargs,
        )
        # safetensors writes through a private temporary file (mode 0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        (save_directory / WEIGHTS_NAME).chmod(0o666 & ~umask)
        return result

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs) -> str:
        card_kwargs = {"repo_id": repo_id, "model_name": repo_id.split("/")[-1], **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card_kwargs, **kwargs)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """Render ``model_cards/template.md`` with this model's metadata and the given card fields."""
        results = kwargs.pop("results", None) or []
        datasets = kwargs.pop("datasets", None)
        model_name = kwargs.pop("model_name", None) or f"{self.architecture}-x{self.scale}"
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        license = kwargs.pop("license", None)  # the weights' license, when it is not the code's
        if license:
            data.license = license
        if datasets:
            data.datasets = list(datasets)
        if results:
            data.model_name = model_name
            data.eval_results = [
                EvalResult(
                    task_type="image-to-image",
                    task_name="Image Super-Resolution",
                    dataset_type=row["dataset"].lower(),
                    dataset_name=f"{row['dataset']} (x{row['scale']})",
                    metric_type=metric,
                    metric_name=f"{metric.upper()} (Y, border {row['scale']})",
                    metric_value=row[metric],
                )
                for row in results
                for metric in ("psnr", "ssim")
                if metric in row
            ]
        paper = self.paper
        context = {
            "model_name": model_name,
            "class_name": type(self).__name__,
            "architecture": self.architecture,
            "scale": self.scale,
            "role": self.role,
            "num_params": f"{self.num_parameters():,}",
            "config_json": json.dumps(self.config, indent=2, sort_keys=True),
            "paper_title": paper.title,
            "paper_authors": paper.authors,
            "paper_year": paper.year,
            "paper_url": paper.url,
            "bibtex": paper.bibtex.strip(),
            "summary": (self.__doc__ or "").strip().split("\n\n")[0],
            "weights_source": "not recorded: this folder was written by `save_pretrained` "
            "without provenance information.",
            "training": None,
            "results": results,
            "repo_id": model_name,
            **kwargs,
        }
        return ModelCard.from_template(card_data=data, template_str=_card_template(), **context)

    # ------------------------------------------------------------------ loading
    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ) -> "SRModel":
        if not strict:
            raise ValueError("srhub loads weights strictly; strict=False is not supported")
        if config is None:
            raise FileNotFoundError(f"no {CONFIG_NAME} found for {model_id!r}: not an srhub model folder or repo")
        architecture = config.get("architecture")
        if architecture is not None and architecture != cls.architecture:
            raise WeightsError(
                f"{model_id!r} holds a {architecture!r} model, not {cls.architecture!r} ({cls.__name__}); "
                "load it with srhub.load() or the matching class"
            )
        unknown = sorted(set(config) - set(cls._hub_mixin_init_parameters) - {"architecture"})
        if unknown:
            raise ValueError(f"{CONFIG_NAME} of {model_id!r} has arguments {cls.__name__} does not take: {unknown}")
        meta = check_config(cls, model_kwargs, source=f"{CONFIG_NAME} of {model_id!r}")
        model = build_empty(cls, model_kwargs, meta=meta)
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, WEIGHTS_NAME)
        else:
            weights = hf_hub_download(
                repo_id=model_id,
                filename=WEIGHTS_NAME,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        load_safetensors(model, weights, device=map_location)
        return model.eval()
