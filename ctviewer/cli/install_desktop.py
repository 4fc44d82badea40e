"""`ctviewer install-desktop`: put ctviewer in the Linux application menu (desktop entry + icons)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctviewer import desktop_integration


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "install-desktop",
        help="add ctviewer to this user's Linux application menu (desktop entry, icons, DICOM/folder MIME types)",
        description="Install ctviewer.desktop into $XDG_DATA_HOME/applications and the icon into "
        "$XDG_DATA_HOME/icons/hicolor (default ~/.local/share), pointing at this installation.",
    )
    p.add_argument("--data-dir", type=Path, help="XDG data folder to install into (default: $XDG_DATA_HOME or ~/.local/share)")
    p.add_argument("--uninstall", action="store_true", help="remove the desktop entry and icons again")
    p.add_argument("--print", dest="print_only", action="store_true", help="only print the desktop entry that would be written")
    p.add_argument("--no-refresh", action="store_true", help="do not run update-desktop-database / gtk-update-icon-cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.print_only:
        print(desktop_integration.render_desktop_entry(desktop_integration.launcher_command()), end="")
        return 0
    if args.uninstall:
        removed = desktop_integration.uninstall(args.data_dir, refresh_caches=not args.no_refresh)
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print("nothing to remove: no ctviewer desktop entry or icons were installed there")
        return 0
    result = desktop_integration.install(args.data_dir, refresh_caches=not args.no_refresh)
    print(f"desktop entry: {result.desktop_file}")
    print(f"icons:         {len(result.icons)} sizes under {result.data_dir / 'icons' / 'hicolor'}")
    print(f"runs:          {' '.join(result.exec_command)}")
    if result.caches_refreshed:
        print(f"refreshed:     {', '.join(result.caches_refreshed)}")
    return 0
