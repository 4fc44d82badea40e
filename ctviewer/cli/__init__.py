"""Command line interface: thin argument parsing over `ctviewer.core`.

Each subcommand lives in its own module exposing ``register(subparsers)``; the
module registers a parser whose ``func(args) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ctviewer import __version__
from ctviewer.core.errors import CTViewerError

# Module names under ctviewer.cli, in the order `--help` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "scan",
    "demo",
    "train",
    "predict",
    "gradcam",
    "cv",
    "evaluate",
    "export",
    "doctor",
    "install_desktop",
    "about",
)
# Subcommands that run a model: TensorFlow is started (quietly) before they begin.
_TENSORFLOW_COMMANDS = {"train", "predict", "gradcam", "cv", "doctor", "export"}


def _available_modules() -> list[object]:
    modules = []
    for name in SUBCOMMANDS:
        try:
            modules.append(importlib.import_module(f"ctviewer.cli.{name}"))
        except ModuleNotFoundError as exc:
            # A subcommand still being written must not break the others.
            if exc.name != f"ctviewer.cli.{name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctviewer",
        description="Train, check and use a binary CNN classifier on CT images.",
    )
    parser.add_argument("--version", action="version", version=f"ctviewer {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show library start-up and debug lines (TensorFlow's) that are hidden by default")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _available_modules():
        module.register(sub)  # type: ignore[attr-defined]
    return parser


def command_names() -> set[str]:
    return {name.replace("_", "-") for name in SUBCOMMANDS}  # module install_desktop -> install-desktop


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    _never_fail_on_file_names()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    verbose = bool(getattr(args, "verbose", False))
    if verbose:
        os.environ["CTVIEWER_VERBOSE"] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if getattr(args, "allow_download", False):
        from ctviewer.core.model.recipes import ALLOW_DOWNLOAD_ENV

        os.environ[ALLOW_DOWNLOAD_ENV] = "1"
    try:
        if args.command in _TENSORFLOW_COMMANDS:
            from ctviewer.core.model.tf_runtime import start_tensorflow

            start_tensorflow(verbose)
        return int(args.func(args) or 0)
    except CTViewerError as exc:
        print(f"ctviewer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error of ours.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"ctviewer {args.command}: interrupted", file=sys.stderr)
        return 130


def _never_fail_on_file_names() -> None:
    """A file name that is not valid UTF-8 is printed escaped instead of ending the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured (closed, replaced)
                pass


if __name__ == "__main__":
    sys.exit(main())
