"""`ctviewer about`: version, bundled components with their licences, and the DICOM decoders present."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ctviewer import __version__
from ctviewer.core.errors import CTViewerError
from ctviewer.licences import component_table, dicom_codec_table, format_component_table, licence_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "about",
        help="version, bundled components and licences, DICOM decoders (for bug reports)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--licence", metavar="NAME", help="print the full licence text of one component (e.g. Keras)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    components = component_table()
    if args.licence:
        wanted = args.licence.casefold()
        match = [c for c in components if c.name.casefold() == wanted or (c.distribution or "").casefold() == wanted]
        if not match:
            names = ", ".join(c.name for c in components)
            raise CTViewerError(f"no component named {args.licence!r}; components: {names}")
        text = licence_text(match[0])
        if text is None:
            print(f"{match[0].name}: {match[0].licence} (no licence file installed; see {match[0].url})")
        else:
            print(text, end="" if text.endswith("\n") else "\n")
        return 0
    codecs = dicom_codec_table()
    if args.json:
        print(json.dumps(
            {
                "version": __version__,
                "components": [dataclasses.asdict(c) for c in components],
                "dicom_decoders": [dataclasses.asdict(c) for c in codecs],
            },
            indent=2,
        ))
        return 0
    print(f"ctviewer {__version__}\n")
    print(format_component_table(components))
    notes: dict[str, list[str]] = {}
    for c in components:
        if c.note:
            notes.setdefault(c.note, []).append(c.name)
    for note, names in notes.items():
        print(f"\n{', '.join(names)}: {note}")
    print("\nDICOM decoders:")
    width = max(len(c.transfer_syntax) for c in codecs)
    for c in codecs:
        print(f"  {c.transfer_syntax:<{width}}  {', '.join(c.plugins) or 'NONE AVAILABLE'}")
    return 0
