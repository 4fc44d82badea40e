"""`ctviewer about`: the component table and DICOM decoders, as text and JSON, and licence texts."""

from __future__ import annotations

import json

from ctviewer.__main__ import main as ctviewer_main
from ctviewer.licences import COMPONENT_NAMES, dicom_codec_table


def test_about_json_lists_components_and_decoders(capsys) -> None:
    assert ctviewer_main(["about", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in info["components"]] == list(COMPONENT_NAMES)
    decoders = {d["transfer_syntax"]: d["plugins"] for d in info["dicom_decoders"]}
    # Only pylibjpeg decodes JPEG Lossless and JPEG-LS here: proof the plugins are found.
    assert "pylibjpeg" in decoders["JPEGLosslessSV1"]
    assert "pylibjpeg" in decoders["JPEGLSLossless"]
    assert "pylibjpeg" in decoders["HTJ2KLossless"]
    assert decoders["RLELossless"]


def test_codec_table_reflects_missing_plugins(monkeypatch) -> None:
    """A decoder whose plugin was not found (as in a bundle without pylibjpeg's metadata) shows up empty."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1

    decoder = get_decoder(JPEGLosslessSV1)
    without = {name: func for name, func in decoder._available.items() if name != "pylibjpeg"}
    monkeypatch.setattr(decoder, "_available", without)
    rows = {c.transfer_syntax: c.plugins for c in dicom_codec_table()}
    assert rows["JPEGLosslessSV1"] == tuple(sorted(without))
    assert "pylibjpeg" in rows["JPEGLSLossless"]  # other syntaxes unaffected


def test_about_text_names_copyleft_notes_and_prints_licences(capsys) -> None:
    assert ctviewer_main(["about"]) == 0
    out = capsys.readouterr().out
    assert "pylibjpeg-libjpeg" in out and "GPL-3.0" in out
    assert out.count("LGPL-3.0: the Qt libraries") == 1  # one note for Qt, PySide6 and shiboken6
    assert ctviewer_main(["about", "--licence", "keras"]) == 0
    assert "Apache License" in capsys.readouterr().out


def test_unknown_licence_name_is_a_one_line_error(capsys) -> None:
    assert ctviewer_main(["about", "--licence", "no-such-thing"]) == 1
    err = capsys.readouterr().err
    assert "no component named 'no-such-thing'" in err and "Traceback" not in err
