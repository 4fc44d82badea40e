"""The doctor on a ctviewer bundle: the recorded patient-grouped split and inference-mode prediction are clean."""

from __future__ import annotations

from dataclasses import replace

import pytest

keras = pytest.importorskip("keras")

from ctviewer.core.data.dataset import discover
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.doctor import run_checks


def by_code(findings) -> dict:
    out: dict = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def test_a_ctviewer_bundle_trained_the_default_way_has_no_split_problems(tmp_path):
    from ctviewer.core.doctor.model_source import as_model_under_test
    from ctviewer.core.model.bundle import save_bundle
    from ctviewer.core.model.recipes import default_config
    from ctviewer.core.training.fit import fit

    ds = discover(make_demo_dataset(tmp_path / "ct", n_patients=6, slices_per_patient=2, size=48))
    config = replace(default_config("default"), input_size=32, epochs=1, batch_size=8)
    bundle = save_bundle(fit(ds, config), tmp_path / "bundle")
    mut = as_model_under_test(str(bundle))
    assert mut.kind == "bundle" and mut.split is not None and mut.split.method == "grouped-stratified"
    assert mut.history and "val_loss" in mut.history
    found = by_code(run_checks(ds, model=str(bundle), baseline=False))
    # The recorded split is patient-grouped and stratified: no leak, both classes validated.
    for code in ("patient-leak", "duplicate-leak", "unstable-predictions", "unnormalised-input"):
        assert code not in found
    assert all(f.severity == "warning" for f in found.get("tail-split-one-class", []))
    assert all(f.severity == "info" for f in found.get("batchnorm-mode-mismatch", []))
    assert not [f for f in found.get("small-class", []) if f.severity == "error"]
    # The doctor knows these are the bundle's own training images (card hash and recorded split).
    [own] = found["evaluated-on-training-data"]
    assert own.severity == "info" and "content hash" in own.evidence["how_known"]

