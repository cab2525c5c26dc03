#!/usr/bin/env bash
# Create ./.venv with this project installed; safe to run again (it fills only what is missing).
#
#   * If the base python3 already imports torch (say, a CUDA build on a GPU machine), the
#     environment sees it (--system-site-packages) and keeps it.
#   * Otherwise it installs torch==2.13.0, which on a CPU machine is the CPU wheel: an
#     unpinned torch would pull several GB of CUDA packages instead.
#   * Then this package with the extras in $EXTRAS (default: dev), and checks that torch was
#     not replaced and that no torchvision is present that fails to import (it breaks
#     diffusers and transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev}"

if [ ! -x .venv/bin/python ]; then
    if "$BASE" -c "import torch" 2>/dev/null; then
        echo "setup: reusing the base interpreter's torch $("$BASE" -c 'import torch; print(torch.__version__)')"
        "$BASE" -m venv --system-site-packages .venv
    else
        "$BASE" -m venv .venv
    fi
fi
PY=.venv/bin/python
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install --quiet torch==2.13.0
torch_before="$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null)"

"$PY" -m pip install --quiet -e ".[${EXTRAS}]"

torch_after="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$torch_before" != "$torch_after" ]; then
    echo "setup: error: installing the project replaced torch $torch_before by $torch_after" >&2
    exit 1
fi
if "$PY" -m pip show torchvision >/dev/null 2>&1 && ! "$PY" -c "import torchvision" 2>/dev/null; then
    echo "setup: error: torchvision is installed but does not import with torch $torch_after; it breaks" \
         "diffusers and transformers. Remove it: $PY -m pip uninstall -y torchvision" >&2
    exit 1
fi
"$PY" -m pip show torch | sed -n '1,2p'
echo "setup: done (torch $torch_after, CUDA available: $("$PY" -c 'import torch; print(torch.cuda.is_available())'))"
