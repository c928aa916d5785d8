"""The README's promises stay true: its model table matches the registry, its commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from srhub.models import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_model_table_lists_every_architecture_with_its_parameter_count():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9-]+)` \| `\w+` \|.*\| ([\d.]+) M \|$", README, re.M)}
    assert set(rows) == set(ARCHITECTURES)
    for name, cls in ARCHITECTURES.items():
        with torch.device("meta"):
            model = cls() if cls.role == "discriminator" else cls(scale=4 if 4 in cls.supported_scales else max(cls.supported_scales))
        assert rows[name] == f"{model.num_parameters() / 1e6:.3f}", name


def test_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = 'pip install -e ".[train,app,fast,dev]" && python -m pytest'
    assert command in README
    for part in command.split(" && "):
        assert part in ci, part
