"""Issue 13: a wrong model card is refused; replacing a bundle keeps the user's files, leaves no gap
and no leftovers, and keeps the umask's mode. No TensorFlow: bundles here are hand-made files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ctviewer.core.errors import ModelError
from ctviewer.core.model.bundle import CARD_FILE, MODEL_FILE, Bundle, read_card, save_bundle


def _card(**changes: object) -> dict:
    card = {
        "format": "ctviewer-model-bundle", "format_version": 1, "model_id": "m1", "kind": "single",
        "classes": ["no_contrast", "contrast"], "positive": "contrast",
        "preprocessing": {"window": "wide", "size": 64, "resize": "pad"},
        "threshold": 0.5, "threshold_rule": "youden", "model_file_sha256": "0" * 64,
    }
    for key, value in changes.items():
        target = card
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return card


def _bundle_files(folder: Path, model_bytes: bytes = b"model", **changes: object) -> Path:
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(model_bytes)
    (folder / CARD_FILE).write_text(json.dumps(_card(**changes)))
    return folder


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"positive": "no_contrast"}, "positive class is 'no_contrast'"),
        ({"classes": "ab", "positive": "b"}, "list of two names"),
        ({"preprocessing.window": "0,inf"}, "not finite"),
        ({"preprocessing.size": 64.7}, "not a whole number"),
        ({"preprocessing.size": True}, "not a whole number"),
        ({"threshold": "0.5"}, "not a number"),
    ],
)
def test_wrong_cards_are_refused_with_the_field(tmp_path: Path, changes: dict, reason: str) -> None:
    folder = _bundle_files(tmp_path / "b", **changes)
    with pytest.raises(ModelError, match=reason):
        read_card(folder)


def test_deeply_nested_card_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / CARD_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="nested too deeply"):
        read_card(folder)


def test_a_good_hand_made_card_reads(tmp_path: Path) -> None:
    card = read_card(_bundle_files(tmp_path / "b"))
    assert card.classes == ("no_contrast", "contrast") and card.preprocessing.size == 64


def _loaded(folder: Path) -> Bundle:
    return Bundle(model=None, card=read_card(folder), folder=folder)


def test_replacing_a_bundle_keeps_other_files_and_replaces_ctviewers(tmp_path: Path) -> None:
    new = _bundle_files(tmp_path / "new", b"new model", threshold=0.25)
    target = _bundle_files(tmp_path / "target", b"old model")
    (target / "my_predictions.csv").write_text("path,prob\n")
    (target / "gradcam").mkdir()
    (target / "gradcam" / "a.png").write_bytes(b"png")
    save_bundle(_loaded(new), target)
    assert (target / MODEL_FILE).read_bytes() == b"new model" and read_card(target).threshold == 0.25
    assert (target / "my_predictions.csv").read_text() == "path,prob\n"
    assert (target / "gradcam" / "a.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "target"]  # nothing left behind


def test_without_overwrite_an_existing_bundle_is_refused(tmp_path: Path) -> None:
    new = _bundle_files(tmp_path / "new", b"new model")
    target = _bundle_files(tmp_path / "target", b"old model")
    with pytest.raises(ModelError, match="--overwrite"):
        save_bundle(_loaded(new), target, overwrite=False)
    assert (target / MODEL_FILE).read_bytes() == b"old model"


def test_replacement_never_moves_the_bundle_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = _bundle_files(tmp_path / "new", b"new model")
    target = _bundle_files(tmp_path / "target", b"old model")
    from ctviewer.core import folders

    moved_away = []
    real_rename = os.rename

    def watch(src: object, dst: object) -> None:
        if Path(src) == target:
            moved_away.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(folders.os, "rename", watch)
    save_bundle(_loaded(new), target)
    assert not moved_away and (target / MODEL_FILE).read_bytes() == b"new model"


def test_bundle_mode_follows_the_umask(tmp_path: Path) -> None:
    new = _bundle_files(tmp_path / "new")
    old_umask = os.umask(0o022)
    try:
        save_bundle(_loaded(new), tmp_path / "saved")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "saved").stat().st_mode & 0o777 == 0o755


def test_leftovers_of_killed_saves_are_cleaned_and_a_missing_bundle_restored(tmp_path: Path) -> None:
    from ctviewer.core import folders

    new = _bundle_files(tmp_path / "new", b"new model")
    stale_tmp = _bundle_files(tmp_path / ".target.tmp-dead", b"half")
    # Killed between the two renames of the old code: the bundle only exists as .old-*.
    stale_old = _bundle_files(tmp_path / ".target.old-dead", b"previous")
    hour_ago = time.time() - 3600
    for leftover in (stale_tmp, stale_old):
        os.utime(leftover, (hour_ago, hour_ago))
    said = folders.clean_leftovers(tmp_path / "target")
    assert (tmp_path / "target" / MODEL_FILE).read_bytes() == b"previous" and "restored" in said[0]
    save_bundle(_loaded(new), tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "target"]
    assert (tmp_path / "target" / MODEL_FILE).read_bytes() == b"new model"


# --------------------------------------------------------------------------- cv outputs as one set


def _old_cv_set(folder: Path) -> None:
    folder.mkdir()
    for name in ("predictions.csv", "metrics.json", "folds.json"):
        (folder / name).write_text("old")
    (folder / "models").mkdir()
    (folder / "models" / "fold_1").mkdir()
    (folder / "my_notes.txt").write_text("mine")


def test_an_output_set_that_fails_midway_leaves_the_old_set_whole(tmp_path: Path) -> None:
    from ctviewer.core.folders import output_set

    out = tmp_path / "cv"
    _old_cv_set(out)
    with pytest.raises(RuntimeError), output_set(out, own=("predictions.csv", "metrics.json", "folds.json",
                                                            "models")) as staged:
        (staged / "predictions.csv").write_text("new")
        raise RuntimeError("killed before metrics.json")
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == {
        "predictions.csv": "old", "metrics.json": "old", "folds.json": "old", "my_notes.txt": "mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv"]


def test_an_output_set_replaces_the_whole_old_set_and_keeps_other_files(tmp_path: Path) -> None:
    from ctviewer.core.folders import output_set

    out = tmp_path / "cv"
    _old_cv_set(out)
    with output_set(out, own=("predictions.csv", "metrics.json", "folds.json", "models")) as staged:
        for name in ("predictions.csv", "metrics.json", "folds.json"):
            (staged / name).write_text("new")
        assert (out / "predictions.csv").read_text() == "old"  # nothing new is visible before the swap
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == {
        "predictions.csv": "new", "metrics.json": "new", "folds.json": "new", "my_notes.txt": "mine"}
    assert not (out / "models").exists()  # the old run's models are not left beside the new results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv"]


def test_nan_probabilities_are_never_written_into_a_report(tmp_path: Path) -> None:
    import numpy as np

    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.metrics.report import ReportError, write_predictions_csv

    pred = Predictions(paths=["a.png", "b.png"], probs=np.array([0.3, np.nan]), threshold=0.5, classes=("n", "p"))
    with pytest.raises(ReportError, match="not finite .*b.png"):
        write_predictions_csv(pred, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()
