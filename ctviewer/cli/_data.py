"""Reading DATA for a subcommand: one scan with a progress bar, skipped files said on stderr."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctviewer.cli._progress import ProgressBars
from ctviewer.core.errors import DatasetError


def scan_images(data: str | Path | Sequence[str], cache: Any, bars: ProgressBars,
                positive: str | None = None) -> Any:
    """`discover` DATA (a folder, labels.csv or several files); raise if nothing is readable.

    A list of one entry is that entry (a folder stays a dataset with its classes).
    """
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.events import Progress

    source = data[0] if not isinstance(data, (str, Path)) and len(data) == 1 else data
    dataset = discover(source, positive=positive, cache=cache,
                       progress=lambda done, total, _path: bars(Progress(done, total, "scanning")))
    if dataset.report.skipped:
        first = dataset.report.skipped[0]
        bars.write(f"warning: skipped {len(dataset.report.skipped)} unreadable files "
                   f"(e.g. {first.path}: {first.reason})")
    if not dataset.items:
        raise DatasetError(f"{source}: no readable images")
    return dataset
