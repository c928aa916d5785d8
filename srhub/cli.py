"""The ``srhub`` command line: one sub-command per job, each a small function.

Sub-commands are listed explicitly in ``main``; each has an ``_add_<name>``
function declaring its arguments and a ``_run_<name>`` function doing the work.
"""

from __future__ import annotations

import argparse
import sys


def _add_models(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the registered architectures")
    parser.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from .models import ARCHITECTURES

    for name, cls in sorted(ARCHITECTURES.items()):
        print(f"{name:24s} {cls.__name__:24s} {cls.role:13s} {cls.paper.year}  {cls.paper.title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srhub", description="Image super-resolution models, weights and benchmarks.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_models(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
