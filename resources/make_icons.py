"""Draw the ctviewer application icon: a stylised axial CT slice of a chest.

Writes PNGs in the sizes desktops ask for, a Windows ``.ico`` and a macOS
``.icns`` into ``resources/``, and copies the PNGs the running app needs into
the package data folder ``ctviewer/resources/icons/``.

Run from the repository root (Pillow is the only requirement)::

    python resources/make_icons.py

The output is deterministic, so re-running it leaves git clean unless the
drawing below changed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_SIZES: tuple[int, ...] = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES: tuple[int, ...] = (16, 24, 32, 48, 64, 128, 256)  # .ico tops out at 256
# Below this size the viewfinder brackets and small organs turn into noise.
SIMPLE_BELOW = 48
CANVAS = 1024  # every variant is drawn at this size, then scaled down

BACKGROUND_TOP = (16, 30, 48)
BACKGROUND_BOTTOM = (32, 56, 82)
SOFT_TISSUE = (128, 134, 142)
SKIN = (222, 226, 231)
LUNG = (18, 21, 26)
HEART = (168, 172, 178)
BONE = (250, 250, 246)
CONTRAST = (255, 255, 255)
ACCENT = (64, 200, 190)


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return (cx - rx, cy - ry, cx + rx, cy + ry)


def _background(size: int) -> Image.Image:
    """Rounded square with a vertical gradient, transparent outside the corners."""
    gradient = Image.new("RGB", (1, size))
    for y in range(size):
        t = y / (size - 1)
        gradient.putpixel(
            (0, y), tuple(round(a + (b - a) * t) for a, b in zip(BACKGROUND_TOP, BACKGROUND_BOTTOM))
        )
    gradient = gradient.resize((size, size))
    mask = Image.new("L", (size, size), 0)
    margin = size * 0.03
    ImageDraw.Draw(mask).rounded_rectangle(
        (margin, margin, size - margin, size - margin), radius=size * 0.18, fill=255
    )
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    icon.paste(gradient, (0, 0), mask)
    return icon


def draw_icon(simple: bool) -> Image.Image:
    """Return the icon at CANVAS x CANVAS pixels.

    Parameters
    ----------
    simple : bool
        Draw the small-size variant: bolder outline, no viewfinder, fewer organs.
    """
    s = CANVAS / 1024
    icon = _background(CANVAS)
    draw = ImageDraw.Draw(icon)

    # Body cross-section: soft tissue with a bright skin/fat rim.
    rim = (44 if simple else 24) * s
    draw.ellipse(_box(512 * s, 540 * s, 390 * s, 300 * s), fill=SKIN)
    draw.ellipse(_box(512 * s, 540 * s, 390 * s - rim, 300 * s - rim), fill=SOFT_TISSUE)

    # Lungs: the dark air-filled fields that make a chest CT recognisable at a glance.
    draw.ellipse(_box(362 * s, 515 * s, 118 * s, 185 * s), fill=LUNG)
    draw.ellipse(_box(662 * s, 515 * s, 118 * s, 185 * s), fill=LUNG)

    if not simple:
        # Heart between the lungs, contrast-filled aorta, and a vertebra with its spinous process.
        draw.ellipse(_box(492 * s, 475 * s, 92 * s, 88 * s), fill=HEART)
        draw.ellipse(_box(560 * s, 640 * s, 30 * s, 30 * s), fill=CONTRAST)
        draw.polygon([(490 * s, 760 * s), (534 * s, 760 * s), (512 * s, 828 * s)], fill=BONE)
    draw.ellipse(_box(512 * s, 712 * s, (62 if simple else 54) * s, (62 if simple else 50) * s), fill=BONE)

    if not simple:
        # Viewfinder corners: it is a viewer, not only an image.
        width = round(30 * s)
        inset, length = 96 * s, 150 * s
        for x0, dx in ((inset, 1), (CANVAS - inset, -1)):
            for y0, dy in ((inset, 1), (CANVAS - inset, -1)):
                draw.line([(x0, y0 + dy * length), (x0, y0), (x0 + dx * length, y0)], fill=ACCENT, width=width, joint="curve")
    return icon


def render(size: int) -> Image.Image:
    """Return the icon scaled to ``size`` x ``size`` pixels (RGBA)."""
    master = draw_icon(simple=size < SIMPLE_BELOW)
    return master.resize((size, size), Image.Resampling.LANCZOS)


def write_icons(out_dir: Path, package_dir: Path | None) -> list[Path]:
    """Write all icon files; return the paths written.

    Parameters
    ----------
    out_dir : Path
        Receives ``icons/ctviewer-<N>.png``, ``ctviewer.ico`` and ``ctviewer.icns``.
    package_dir : Path or None
        If given, the PNGs are also copied to ``<package_dir>/icons/`` (runtime package data).
    """
    icons_dir = out_dir / "icons"
    icons_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for size in PNG_SIZES:
        path = icons_dir / f"ctviewer-{size}.png"
        render(size).save(path, optimize=True)
        written.append(path)

    ico_path = out_dir / "ctviewer.ico"
    # Hand each size its own rendering so the small ones get the simple variant.
    ico_images = [render(size) for size in ICO_SIZES]
    ico_images[-1].save(ico_path, sizes=[(n, n) for n in ICO_SIZES], append_images=ico_images[:-1])
    written.append(ico_path)

    icns_path = out_dir / "ctviewer.icns"
    render(1024).save(icns_path, append_images=[render(n) for n in (16, 32, 64, 128, 256, 512)])
    written.append(icns_path)

    if package_dir is not None:
        target = package_dir / "icons"
        target.mkdir(parents=True, exist_ok=True)
        for path in written[: len(PNG_SIZES)]:
            shutil.copyfile(path, target / path.name)
            written.append(target / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "resources")
    parser.add_argument("--package-dir", type=Path, default=REPO_ROOT / "ctviewer" / "resources")
    parser.add_argument("--no-package-copy", action="store_true", help="do not copy PNGs into the package")
    args = parser.parse_args(argv)
    paths = write_icons(args.out_dir, None if args.no_package_copy else args.package_dir)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
