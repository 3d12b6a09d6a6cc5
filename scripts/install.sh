#!/bin/sh
# Install backdoorlab into ./.venv: Debian's Fashion-MNIST package (when apt is available), PyTorch
# (CPU build 2.13.0 where it is on disk; see README for other machines), and the package itself.
# Usage: sh scripts/install.sh        # runtime
#        sh scripts/install.sh dev    # + test and lint tools
set -eu
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

need_apt=""
[ -d /usr/share/datasets/fashion-mnist ] || need_apt="dataset-fashion-mnist"
python3 -c "import ensurepip" 2>/dev/null || need_apt="$need_apt python3-venv"
if [ -n "$need_apt" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian package(s):$need_apt" >&2
        { as_root apt-get install -y -q $need_apt >/dev/null 2>&1 ||
          { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q $need_apt >/dev/null; }; } ||
          echo "warning: could not install$need_apt with apt-get; the demo falls back to synthetic data" >&2
    else
        echo "note: no apt-get here; put Fashion-MNIST's IDX files in a folder and pass --data-root" >&2
    fi
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "backdoorlab needs Python >= 3.11")'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned, so that the package's open range never pulls another build
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".$extra"
echo "installed backdoorlab into .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
