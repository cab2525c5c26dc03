#!/usr/bin/env bash
# Set up the project's Python environment; safe to run again (it only fills what is missing).
#
#   * If a virtual or conda environment is active, install into it; otherwise create ./.venv.
#   * If torch is already importable there (for instance a CUDA build on a GPU machine), keep it.
#     Otherwise install torch==2.13.0, which on a CPU machine is the local CPU wheel. An
#     unpinned torch would pull several GB of CUDA packages instead.
#   * Install this package with the extras given in $EXTRAS (default: dev), then check that
#     torch was not replaced and that torchvision is absent or importable.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${EXTRAS:-dev}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"

if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
    PY="$(command -v python)"
else
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv
    fi
    PY=.venv/bin/python
fi
echo "setup: using $PY"

if "$PY" -c "import torch" 2>/dev/null; then
    echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    "$PY" -m pip install --quiet "$TORCH_PIN"
fi
torch_before="$("$PY" -c 'import torch; print(torch.__version__)')"

"$PY" -m pip install --quiet -e ".[${EXTRAS}]"

torch_after="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$torch_before" != "$torch_after" ]; then
    echo "setup: error: installing the project replaced torch $torch_before by $torch_after" >&2
    exit 1
fi
if "$PY" -m pip show torchvision >/dev/null 2>&1 && ! "$PY" -c "import torchvision" 2>/dev/null; then
    echo "setup: error: torchvision is installed but does not import with torch $torch_after;" \
         "it breaks diffusers and transformers. Remove it: $PY -m pip uninstall -y torchvision" >&2
    exit 1
fi
"$PY" -m pip show torch | sed -n '1,2p'
echo "setup: done (torch $torch_after, cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available())'))"
