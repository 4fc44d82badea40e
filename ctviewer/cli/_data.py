"""Reading DATA for a subcommand: one scan with a progress bar, skipped files said on stderr."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctviewer.cli._progress import ProgressBars

if TYPE_CHECKING:
    import argparse

    from ctviewer.core.data.cache import Cache
from ctviewer.core.errors import DatasetError


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", metavar="DIR", help="preprocessing cache (default: the user cache folder)")


def cache_from_args(args: argparse.Namespace) -> Cache:
    """The preprocessing cache ``--cache-dir`` names, or the user cache folder."""
    from ctviewer.core.data.cache import Cache

    return Cache(args.cache_dir) if args.cache_dir else Cache()


def scan_images(data: str | Path | Sequence[str], cache: Any, bars: ProgressBars,
                positive: str | None = None) -> Any:
    """`discover` DATA (a folder, labels.csv or several files); raise if nothing is readable.

    A list of one entry is that entry (a folder stays a dataset with its classes).
    """
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.events import Event, Progress
    source = data[0] if not isinstance(data, (str, Path)) and len(data) == 1 else data
    def scanning(event: Event) -> None:  # the CLI's bar says "scanning"; the per-image events are not shown
        if isinstance(event, Progress):
            bars(Progress(event.done, event.total, "scanning"))

    dataset = discover(source, positive=positive, cache=cache, on_event=scanning)
    skipped = dataset.report.skipped
    if skipped:
        bars.write(f"warning: skipped {len(skipped)} unreadable files:")
        for entry in skipped:
            bars.write(f"warning:   {entry.path}: {entry.reason}")
    if not dataset.items:
        raise DatasetError(f"{source}: no readable images")
    return dataset
