#!/usr/bin/env bash
# Build the one-folder ctviewer application with PyInstaller (Linux and macOS).
#
#   packaging/build.sh [--clean] [--archive] [--no-check]
#
#   --clean      drop PyInstaller's caches and build/ first (a from-scratch build)
#   --archive    also pack the result into dist/ctviewer-<version>-<os>-<arch>.tar.gz
#   --no-check   skip the smoke check of the built program
#
# Environment: PYTHON (default: .venv/bin/python, else python3) must have ctviewer's
# dependencies and PyInstaller installed:  pip install -e ".[package]"
# Result: dist/ctviewer/ctviewer (Linux) or dist/ctviewer.app (macOS). Work files: build/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLEAN=() ARCHIVE=0 CHECK=1
for arg in "$@"; do
    case "$arg" in
        --clean) CLEAN=(--clean) ;;
        --archive) ARCHIVE=1 ;;
        --no-check) CHECK=0 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: PyInstaller is missing for $PYTHON; install it with: $PYTHON -m pip install -e \".[package]\"" >&2
    exit 1
fi
VERSION="$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("ctviewer/__init__.py").read()).group(1))')"

if [[ ! -f resources/ctviewer.ico || ! -f ctviewer/resources/icons/ctviewer-256.png ]]; then
    "$PYTHON" resources/make_icons.py >/dev/null
fi

echo "build.sh: building ctviewer $VERSION with $("$PYTHON" -m PyInstaller --version) (3-7 min on 2 shared cores)"
START=$(date +%s)
# Bundled TensorFlow must not look for a GPU or spam logs while PyInstaller imports it for analysis.
TF_CPP_MIN_LOG_LEVEL=2 "$PYTHON" -m PyInstaller --noconfirm "${CLEAN[@]}" \
    --distpath dist --workpath build packaging/ctviewer.spec
END=$(date +%s)
echo "build.sh: build took $((END - START)) s"

case "$(uname -s)" in
    Darwin) APP=dist/ctviewer.app; BIN=dist/ctviewer.app/Contents/MacOS/ctviewer; OS=macos ;;
    *) APP=dist/ctviewer; BIN=dist/ctviewer/ctviewer; OS=linux ;;
esac
echo "build.sh: bundle $APP is $(du -sh "$APP" | cut -f1)"

if [[ "$CHECK" == 1 ]]; then
    "$BIN" --version
    if "$BIN" --help 2>/dev/null | grep -q -- "--self-test" || grep -rqs -- "--self-test" ctviewer/gui/app.py; then
        echo "build.sh: running $BIN --self-test (offscreen)"
        SECONDS=0
        QT_QPA_PLATFORM=offscreen "$BIN" --self-test
        echo "build.sh: self-test passed in ${SECONDS} s"
    fi
fi

if [[ "$ARCHIVE" == 1 ]]; then
    TARBALL="dist/ctviewer-$VERSION-$OS-$(uname -m).tar.gz"
    tar -C "$(dirname "$APP")" -czf "$TARBALL" "$(basename "$APP")"
    echo "build.sh: archive $TARBALL ($(du -sh "$TARBALL" | cut -f1))"
fi
