"""`ctviewer gradcam`: one PNG per image, the map the app overlays, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from ctviewer.cli import main
from ctviewer.core.explain.gradcam import overlay_rgb


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from ctviewer.core.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("gradcam")
    data = make_demo_dataset(root / "data", n_patients=3, slices_per_patient=2, size=48)
    bundle = root / "bundle"
    assert main(["train", str(data), "--out", str(bundle), "--positive", "contrast", "--size", "32",
                 "--epochs", "1", "--batch-size", "8", "-q"]) == 0
    return data, bundle


def test_writes_one_overlay_per_image_named_apart_and_prints_probabilities(trained, tmp_path: Path, capsys):
    data, bundle = trained
    out = tmp_path / "cams"
    assert main(["gradcam", str(bundle), str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 "-q"]) == 0
    files = sorted(out.glob("*_gradcam.png"))
    n_images = len(list(data.rglob("*.dcm")))
    assert len(files) == n_images  # IM_0001.dcm exists in every patient folder: numbered, not overwritten
    for file in files:
        with PILImage.open(file) as png:
            assert png.size == (32, 32) and png.mode == "RGB"
    lines = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]
    assert len(lines) == n_images
    assert all(0.0 <= float(line.split()[0]) <= 1.0 for line in lines)


def test_predict_and_gradcam_give_the_same_probability(trained, tmp_path: Path, capsys):
    import csv

    data, bundle = trained
    image = sorted((data / "contrast").rglob("*.dcm"))[0]
    assert main(["predict", str(bundle), str(image), "--csv", str(tmp_path / "p.csv"), "-q"]) == 0
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as fh:
        predicted = float(next(csv.DictReader(fh))["prob"])
    capsys.readouterr()
    assert main(["gradcam", str(bundle), str(image), "--out", str(tmp_path / "one"), "-q"]) == 0
    shown = float(capsys.readouterr().out.splitlines()[0].split()[0])
    assert shown == pytest.approx(predicted, abs=1e-4)


def test_bad_bundle_and_bad_opacity_are_one_line_errors(trained, tmp_path: Path, capsys):
    data, _ = trained
    assert main(["gradcam", str(tmp_path), str(data), "--out", str(tmp_path / "x")]) == 1
    assert "model_card.json" in capsys.readouterr().err
    assert main(["gradcam", str(trained[1]), str(data), "--out", str(tmp_path / "x"), "--opacity", "2"]) == 1
    assert "--opacity" in capsys.readouterr().err


def test_overlay_keeps_cold_pixels_grey_and_colours_hot_ones():
    image = np.full((4, 4), 0.5, np.float32)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[0, 1] = 1.0, 0.5
    rgb = overlay_rgb(image, heat, opacity=0.6).astype(int)
    assert rgb.shape == (4, 4, 3)
    assert (rgb[1:, 1:] == 128).all()  # no heat: the grey image unchanged
    red, green, blue = rgb[0, 0]
    assert red == green > 128 > blue  # the hottest point turns yellow
    red, green, blue = rgb[0, 1]
    assert red > 128 and red > green and red > blue  # warm: red
    with pytest.raises(ValueError, match="shape"):
        overlay_rgb(image, np.zeros((2, 2), np.float32))
