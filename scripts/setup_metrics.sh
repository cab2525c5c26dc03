#!/usr/bin/env bash
# Create ./.venv-metrics: the project beside the reference metric packages, for the parity tests
# (`make test-metrics`). Safe to run again.
#
# The reference packages (open_clip, clean-fid, torchmetrics' Inception FID, hpsv2's own code)
# import torchvision, and torch 2.13.0's CPU wheel has no matching torchvision. torch 2.14.1 with
# torchvision 0.29.1 does match; on a machine without a GPU they install as CUDA builds (about
# 5.6 GB, about 5 minutes) and run on the CPU. hpsv2 is installed without its dependencies: it
# pins pytest==7.2.0 and protobuf<4, which conflict with the project's; its scoring code needs
# none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${PYTHON:-python3}"
ENV=.venv-metrics
[ -x $ENV/bin/python ] || "$BASE" -m venv $ENV
PY=$ENV/bin/python
"$PY" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$PY" -m pip install --quiet open_clip_torch torchmetrics clean-fid scipy
"$PY" -m pip install --quiet --no-deps hpsv2
"$PY" -m pip install --quiet clint  # hpsv2 imports it (a progress bar); its other pins are not needed
"$PY" -m pip install --quiet -e ".[dev]"
"$PY" -c "import torch, torchvision, open_clip, cleanfid.fid, torchmetrics; print('setup-metrics: torch', torch.__version__, 'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__)"
