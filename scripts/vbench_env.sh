#!/usr/bin/env bash
# Create VBench's own environment (default ./.vbench-env), apart from the project's .venv:
# vbench 0.1.5 pins transformers==4.33.2, numpy<2 and timm<=1.0.12, which the project's
# transformers 5 and numpy 2 cannot share. `python -m harness.vbench run --env DIR` drives it.
#
#   scripts/vbench_env.sh [--dry-run] [ENV_DIR]
#
#   --dry-run           print the commands, run nothing
#   PYTHON=python3.11   the base interpreter (torch 2.1.2 has wheels for Python 3.8-3.11)
#   VBENCH_TORCH="torch==2.1.2 torchvision==0.16.2"
#                       the torch/torchvision pair, installed first and then held as a pip
#                       constraint so that vbench's requirements never replace it. The default
#                       pair's Linux x86_64 wheels on the package registry are CUDA 12.1 builds,
#                       the newest CUDA that vbench's setup.py accepts (11.6-12.1); they run on
#                       Hopper (sm_90). Name another pair here for another CUDA or driver.
#   VBENCH_TORCH_INDEX=URL
#                       an extra package index for that pair (e.g. a CUDA 11.8 wheel index)
#
# Resolved with `pip install --dry-run` on Python 3.11 (not installed there: several GB of CUDA
# packages): torch 2.1.2, torchvision 0.16.2, numpy 1.26.4, transformers 4.33.2, tokenizers 0.13.3,
# timm 1.0.12, decord 0.6.0, opencv-python 4.11.0.86, pyiqa 0.1.10, openai-clip 1.0.1.
#
# Not installed here: detectron2, which object class, multiple objects, color and spatial
# relationship (GRiT) need. It is not on the package registry; VBench's README builds it from
# facebookresearch/detectron2's git repository against the environment's torch.
#
# VBench's evaluate needs a CUDA GPU: it initialises NCCL and puts every model on "cuda".
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
ENV_DIR=.vbench-env
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        -*) echo "vbench_env: unknown option $arg (see $0 --help)" >&2; exit 2 ;;
        *) ENV_DIR="$arg" ;;
    esac
done
BASE="${PYTHON:-python3}"
TORCH="${VBENCH_TORCH:-torch==2.1.2 torchvision==0.16.2}"
INDEX=()
[ -n "${VBENCH_TORCH_INDEX:-}" ] && INDEX=(--extra-index-url "$VBENCH_TORCH_INDEX")
PY="$ENV_DIR/bin/python"
CONSTRAINTS="$ENV_DIR/torch-constraints.txt"
# vbench's own pins restated, so that a resolver change cannot silently move them.
VBENCH=(vbench==0.1.5 transformers==4.33.2 "numpy<2" "timm>=0.9,<=1.0.12" decord)

run() {
    printf '+'; printf ' %q' "$@"; echo
    if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ ! -x "$PY" ]; then
    run "$BASE" -m venv "$ENV_DIR"
fi
run "$PY" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # TORCH is a list of requirement specifiers
run "$PY" -m pip install ${INDEX[@]+"${INDEX[@]}"} $TORCH
echo "+ printf '%s\n' $TORCH > $CONSTRAINTS"
if [ "$DRY" = 0 ]; then printf '%s\n' $TORCH > "$CONSTRAINTS"; fi
run "$PY" -m pip install ${INDEX[@]+"${INDEX[@]}"} -c "$CONSTRAINTS" "${VBENCH[@]}"

if [ "$DRY" = 0 ]; then
    echo "vbench_env: installed in $ENV_DIR:"
    shown='vbench|torch|torchvision|transformers|tokenizers|numpy|timm|decord|opencv-python|pyiqa|openai-clip'
    "$PY" -m pip list 2>/dev/null | grep -iE "^($shown) " || true
    "$PY" -c "import torch; print('vbench_env: torch', torch.__version__, 'CUDA', torch.version.cuda, \
'GPU visible:', torch.cuda.is_available())"
fi

cat <<EOF
vbench_env: VBench downloads each dimension's weights on first use (wget, torch hub, the clip
package, Hugging Face for bert-base-uncased) into \$VBENCH_CACHE_DIR, default ~/.cache/vbench.
Offline (the harness passes --load_ckpt_from_local True unless --hub-weights), place them there:
  clip_model/ViT-B-32.pt                                    (background consistency, appearance style)
  clip_model/ViT-L-14.pt                                    (aesthetic quality)
  dino_model/dino_vitbase16_pretrain.pth and a checkout of facebookresearch/dino at
  dino_model/facebookresearch_dino_main/                    (subject consistency)
  aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth     (aesthetic quality: LAION's old linear head)
  amt_model/amt-s.pth                                       (motion smoothness)
  raft_model/models/raft-things.pth                         (dynamic degree, and the static filter)
  pyiqa_model/musiq_spaq_ckpt-358bb6af.pth                  (imaging quality)
  umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth         (human action)
  grit_model/grit_b_densecap_objectdet.pth                  (object class, multiple objects, color,
                                                             spatial relationship; needs detectron2)
  caption_model/tag2text_swin_14m.pth                       (scene)
  ViCLIP/ViClip-InternVid-10M-FLT.pth                       (temporal style, overall consistency)
  ViCLIP/bpe_simple_vocab_16e6.txt.gz                       (their tokeniser)
and bert-base-uncased in the Hugging Face cache (scene; GRiT). Temporal flickering needs none.
EOF
