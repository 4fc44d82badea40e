"""Entry point: ``ctviewer`` opens the GUI; ``ctviewer <subcommand> ...`` runs the CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from ctviewer.cli import command_names

    first = args[1] if args[:1] == ["--verbose"] and len(args) > 1 else (args[0] if args else "")
    if first in command_names() or first in ("-h", "--help", "--version"):
        from ctviewer.cli import main as cli_main

        return cli_main(args)
    return gui_main(args)


def gui_main(argv: Sequence[str] | None = None) -> int:
    """Open the desktop application (flags: --demo, --screenshot OUT.png, --self-test)."""
    args = list(sys.argv[1:] if argv is None else argv)
    from ctviewer.gui.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
