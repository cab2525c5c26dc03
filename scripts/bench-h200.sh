#!/usr/bin/env bash
# The speed measurements in results/bench/*-h200.json, on one GPU, by section (default: all; about
# 20 minutes on an H200, each section under 10):
#   bash scripts/bench-h200.sh [gpu-test] [tiny] [sd15] [sd15-compile] [sd15-strata] [large] [cell] [sdxl-offload] [metrics] [metrics-parity] [video] [table4-world] [sd15-profile] [sd15-networks] [video-offload]
#                           [dmd2-curve] [lcm-curve]
#                                                                           (writes to $OUT, default results/bench/new)
#   gpu-test  tests/test_tdm_cuda.py: graphs against eager, per-row against every-row roll-outs
#   tiny      tiny-sd15 at batch 256: CUDA graphs against eager, and graphs with torch.compile against without
#   sd15      SD-1.5 eager beside the official pass structure; compile + channels-last (compiling takes over 5 minutes);
#             checkpointing; 2 micro-batches (SD15_FAST=1 skips the last two)
#   large     PixArt-alpha at the paper's batch 32 (4 micro-batches) and SDXL LoRA (beside the official structure)
#   cell      one full-scale Table 5 cell (TDM-4step, seed 0)
#   sd15-compile  SD-1.5 with compile_scope=blocks (regional compilation) and channels-last, eager and with CUDA
#             graphs (the latter beside the official structure; about 3 minutes each, mostly compilation)
#   sd15-strata   the same graphed run with segments=stratified (beside the official structure), then the GPU
#             tests of that path: tiny-sd15 graphs against eager, and SD-1.5 compiled + graphed against eager
#   sdxl-offload  full-weight SDXL with FSDP2 and CPU offload on one process, batch 1
#   metrics   HPSv2.1 scoring throughput on random ViT-H-14 weights (harness.metrics.hps_bench): hpsv2's amp, fp16 and
#             bf16 weights in one process, each with its scores' difference from amp (about 1 minute)
#   metrics-parity  the metric scorers against the reference code on the GPU (harness.metrics.parity --device cuda;
#             about 2 minutes): the reference packages come as wheels in $PARITY_WHEELS (default .gpu/wheels: open_clip_torch,
#             hpsv2, clean-fid, ftfy, wcwidth), unpacked onto PYTHONPATH; the aesthetic comparison needs the LAION head at
#             $AES_HEAD (default .gpu/sac+logos+ava1-l14-linearMSE.pth) and is skipped without it
#   table4-world  Table 4 on tiny-cogvideox at full scale, one process per student seed, records in $OUT/table4/
#             (copy them into results/table4/tiny-cogvideox/, then `python -m harness.reproduce table4 --world
#             tiny-cogvideox --scale full` on any machine renders paper_tables/table4.* from them)
#   sd15-profile  where the fastest SD-1.5 path's time goes, as replayed (scripts/profile_sd15.py with CUDA graphs:
#             the wall per iteration, the kernels of two replays by family, the GPU's busy share; about 6.5
#             minutes, mostly compilation); to $OUT/sd15-profile-graphed.txt
#   sd15-networks  the fastest SD-1.5 setting with each whole network compiled (compile_scope=networks) instead of
#             block by block, beside the official structure (not yet measured; compiling may take most of 10 minutes)
#   video-offload  full-weight CogVideoX-2B training through FSDP2 with CPU offload on one process, batch 1, with
#             gradient checkpointing (the preset's): whether full weights fit one H200 that way (not yet run; about 7
#             minutes with the random pipeline's build)
#   dmd2-curve  DMD2's convergence on tiny-sd15 (the small world's Fig. 9 beside results/sweeps/budget-4step, TDM's):
#             fd_teacher and the world's metrics at 1,000, 2,500 and 5,000 iterations (100 to 500 generator updates),
#             seeds 0 and 1 side by side, eager; cells in $OUT/dmd2-curve/ (copy into results/sweeps/budget-dmd2-4step/,
#             then the same sweep command with --seeds 0,1 on any machine writes the summary from them, and
#             `python -m harness.curves budget-4step budget-dmd2-4step --x train_seconds` the comparison). Not yet run:
#             on a 2-core CPU an iteration takes 8.4 s (TDM's 29 s), so the last budget may not finish in one call
#   lcm-curve   LCM's convergence on tiny-sd15 at 500, 1,000 and 2,000 iterations, seeds 0 and 1 side by side,
#             eager; cells in $OUT/lcm-curve/ (copy into results/sweeps/budget-lcm-4step/). Not yet run
#   video     CogVideoX-2B at 49 x 480 x 720 on random weights: a 4-step sample by part (encoding, steps, VAE
#             decode plain and tiled), then TDM LoRA training at batch 1, with and without gradient checkpointing
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1  # PYTHON=.venv/bin/python to use the project's environment
PY=${PYTHON:-python3}
OUT=${OUT:-results/bench/new}; mkdir -p "$OUT"
SECTIONS=${*:-gpu-test tiny sd15 large cell}  # sd15-compile, sd15-strata, sdxl-offload, metrics, metrics-parity, video, table4-world, sd15-profile, sd15-networks, video-offload, dmd2-curve, lcm-curve only when named
T0=$(date +%s); stamp() { echo "=== $1 at +$(( $(date +%s) - T0 )) s"; }
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
summary() { $PY -c "
import json,sys; d=json.load(open(sys.argv[1]))
keys=('execution','seconds_per_iteration','ms_per_sample_iteration','peak_memory_gib','achieved_tflops','speedup_vs_official')
print({k: d.get(k) for k in keys}); c=d.get('compared'); o=d.get('official_layout')
c and print('compared', {k: c.get(k) for k in keys + ('speedup_of_main_run',)})
o and print('official', {k: o.get(k) for k in keys + ('error',)})" $1; }
bench() {  # bench NAME TIMEOUT ARGS...: one bench, its log appended to bench.log, its summary printed
  local name=$1 limit=$2; shift 2; stamp $name
  timeout $limit $PY -m methods.tdm.bench --out $OUT/$name.json "$@" >> $OUT/bench.log 2>&1; echo rc=$?
  summary $OUT/$name.json
}

if want gpu-test; then
  stamp gpu-test
  timeout 420 $PY -m pytest -m "gpu and not slow" tests/test_tdm_cuda.py -s -q -p no:cacheprovider > $OUT/gpu-test.log 2>&1; echo rc=$?
  grep -E "relative difference|passed|failed|Error" $OUT/gpu-test.log | tail -10
fi
if want tiny; then
  bench tdm-tiny-sd15-h200 150 --backbone tiny-sd15 --batch-size 256 --iterations 100 --compare execution=eager --no-reference
  bench tdm-tiny-sd15-compile-h200 300 --backbone tiny-sd15 --batch-size 256 --iterations 100 --compare compile=false --no-reference compile=true
fi
if want sd15; then
  $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
  bench tdm-sd15-h200 150 --pipeline /tmp/sd15 --iterations 20
  bench tdm-sd15-compile-h200 600 --pipeline /tmp/sd15 --iterations 20 --no-reference compile=true channels_last=true
  if [[ -z $SD15_FAST ]]; then
    # beside the official structure, so that each record carries its own ratio (about 40 s more each)
    bench tdm-sd15-checkpointing-h200 160 --pipeline /tmp/sd15 --iterations 20 gradient_checkpointing=true
    bench tdm-sd15-accumulation-h200 160 --pipeline /tmp/sd15 --iterations 20 grad_accumulation=2
  fi
fi
if want sd15-compile; then
  [ -d /tmp/sd15 ] || $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
  bench tdm-sd15-compile-blocks-h200 360 --pipeline /tmp/sd15 --iterations 14 --no-reference compile=true compile_scope=blocks channels_last=true
  bench tdm-sd15-compile-blocks-graphs-h200 440 --pipeline /tmp/sd15 --iterations 24 compile=true compile_scope=blocks channels_last=true execution=cuda_graph
fi
if want sd15-strata; then  # stratified segments: three more roll-out shapes to compile (about 5.5 minutes cold)
  [ -d /tmp/sd15 ] || $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
  bench tdm-sd15-strata-blocks-graphs-h200 400 --pipeline /tmp/sd15 --iterations 20 compile=true compile_scope=blocks channels_last=true execution=cuda_graph segments=stratified
  stamp gpu-test-sd15  # the compiled, graphed path against eager at SD-1.5 size (compiled shapes cached by the bench)
  timeout 300 $PY -m pytest -m gpu tests/test_tdm_cuda.py -k "stratified or sd15_compiled" -s -q -p no:cacheprovider > $OUT/gpu-test-sd15.log 2>&1; echo rc=$?
  grep -E "relative difference|passed|failed|Error" $OUT/gpu-test-sd15.log | tail -4
fi
if want sdxl-offload; then  # full-weight SDXL, FSDP2 with CPU offload, one process (about 4 minutes; host memory sampled)
  stamp sdxl-offload
  ( while true; do free -g | awk '/Mem/{print $3}' >> $OUT/host-mem-gib.txt; sleep 5; done ) & MON=$!
  timeout 330 $PY -m accelerate.commands.launch --config_file methods/tdm/accelerate_configs/fsdp-offload.yaml \
    --num_processes 1 -m methods.tdm.bench --backbone sdxl --batch-size 1 --iterations 4 --no-reference \
    --out $OUT/tdm-sdxl-fsdp-offload-h200.json >> $OUT/bench.log 2>&1; echo rc=$?
  kill $MON; echo "host memory used, peak GiB: $(sort -n $OUT/host-mem-gib.txt | tail -1)"
  summary $OUT/tdm-sdxl-fsdp-offload-h200.json
fi
if want metrics; then
  stamp hps-throughput
  timeout 180 $PY -m harness.metrics.hps_bench --device cuda --n 4096 --batch-size 256 --precision amp,fp16,bf16 \
    --out $OUT/hps-throughput-h200.json >> $OUT/bench.log 2>&1; echo rc=$?
  $PY -c "
import json, sys; d = json.load(open(sys.argv[1]))
for name, r in d['precisions'].items():
    print(name, {k: round(r[k]) for k in ('image_tower', 'image_tower_with_gpu_preprocessing', 'end_to_end')},
          'vs amp', r['score_vs_amp'] and round(r['score_vs_amp']['max_abs'], 4), 'vs fp32', round(r['score_vs_fp32']['max_abs'], 4),
          'score std', round(r['scores']['std'], 2), 'GiB', r['peak_memory_gib'] and round(r['peak_memory_gib'], 1))" $OUT/hps-throughput-h200.json
fi
if want metrics-parity; then
  stamp metrics-parity
  WHEELS=${PARITY_WHEELS:-.gpu/wheels}; SITE=/tmp/parity-site; mkdir -p $SITE
  for w in $WHEELS/*.whl; do [ -f "$w" ] && $PY -m zipfile -e "$w" $SITE; done
  AES_HEAD=${AES_HEAD:-.gpu/sac+logos+ava1-l14-linearMSE.pth}
  if [ -f "$AES_HEAD" ]; then ONLY=hps,aes,clip,fid; HEAD=(--aes-head "$AES_HEAD"); else ONLY=hps,clip,fid; HEAD=(); echo "no $AES_HEAD: aes skipped"; fi
  PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} timeout 300 $PY -m harness.metrics.parity --device cuda --only $ONLY "${HEAD[@]}" \
    --out $OUT/parity-h200.json > $OUT/parity-h200.log 2>&1; echo rc=$?
  grep -v "^\[parity\]" $OUT/parity-h200.log | tail -16
fi
if want video; then  # the random CogVideoX-2b folder (T5-XXL in bf16 included) is built once, about 2 minutes
  stamp video
  $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['cogvideox-2b']('/tmp/cogvideox')" > /dev/null 2>&1
  timeout 200 $PY -m methods.tdm.bench_sampling --pipeline /tmp/cogvideox --steps 4 --clips 2 \
    --out $OUT/cogvideox-2b-sampling-h200.json >> $OUT/bench.log 2>&1; echo rc=$?
  bench tdm-cogvideox-2b-lora-h200 300 --backbone cogvideox-2b --pipeline /tmp/cogvideox --batch-size 1 --iterations 6 \
    --no-reference --compare gradient_checkpointing=false  # the preset checkpoints; compared without
fi
if want large; then
  $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['pixart']('/tmp/pixart')" > /dev/null 2>&1
  bench tdm-pixart-h200 240 --backbone pixart --pipeline /tmp/pixart --batch-size 32 --iterations 6 --no-reference grad_accumulation=4
  rm -rf /tmp/pixart
  $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sdxl']('/tmp/sdxl')" > /dev/null 2>&1
  bench tdm-sdxl-lora-h200 200 --backbone sdxl --pipeline /tmp/sdxl --batch-size 16 --iterations 8 lora_rank=64
fi
if want sd15-profile; then
  [ -d /tmp/sd15 ] || $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
  printf 'a photo of a cat\na red car\n' > /tmp/prompts.txt
  stamp sd15-profile
  timeout 540 $PY scripts/profile_sd15.py graphed compile=true compile_scope=blocks channels_last=true \
    segments=stratified execution=cuda_graph > $OUT/sd15-profile-graphed.txt 2>&1; echo rc=$?
  tail -40 $OUT/sd15-profile-graphed.txt
fi
if want sd15-networks; then
  [ -d /tmp/sd15 ] || $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
  bench tdm-sd15-strata-networks-graphs-h200 540 --pipeline /tmp/sd15 --iterations 20 compile=true compile_scope=networks \
    channels_last=true execution=cuda_graph segments=stratified
fi
if want video-offload; then
  [ -d /tmp/cogvideox ] || $PY -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['cogvideox-2b']('/tmp/cogvideox')" > /dev/null 2>&1
  stamp video-offload
  ( while true; do free -g | awk '/Mem/{print $3}' >> $OUT/host-mem-video-gib.txt; sleep 5; done ) & MON=$!
  timeout 400 $PY -m accelerate.commands.launch --config_file methods/tdm/accelerate_configs/fsdp-offload.yaml \
    --num_processes 1 -m methods.tdm.bench --backbone cogvideox-2b --pipeline /tmp/cogvideox --batch-size 1 \
    --iterations 4 --no-reference --out $OUT/tdm-cogvideox-2b-full-offload-h200.json lora_rank=0 >> $OUT/bench.log 2>&1
  echo rc=$?; kill $MON; echo "host memory peak: $(sort -n $OUT/host-mem-video-gib.txt | tail -1) GiB"
  summary $OUT/tdm-cogvideox-2b-full-offload-h200.json
fi
if want table4-world; then  # Table 4 on tiny-cogvideox: the three student seeds side by side (about 5 minutes)
  stamp table4-world
  for S in 0 1 2; do
    timeout 500 $PY -m harness.reproduce table4 --world tiny-cogvideox --device cuda --scale full --seeds $S \
      --results-dir /tmp/table4-seed$S --no-progress > $OUT/table4-seed$S.log 2>&1 &
  done
  wait
  mkdir -p $OUT/table4  # each process also sampled the teacher cells; seed 0's are kept
  cp /tmp/table4-seed*/table4/tiny-cogvideox/4step-*.json /tmp/table4-seed0/table4/tiny-cogvideox/teacher-*.json $OUT/table4/  # what finished, even after a timeout
  ls $OUT/table4
fi
curve() {  # curve NAME VARIANT BUDGETS: a budget sweep on tiny-sd15, seeds 0 and 1 side by side; each seed's
  local name=$1 variant=$2 budgets=$3   # budgets share one run (harness.sweep), and what finished is kept
  stamp $name
  for S in 0 1; do
    timeout 540 $PY -m harness.sweep budget-$variant --variant $variant --set iterations=$budgets \
      --seeds $S --device cuda --results-dir /tmp/$name-seed$S --no-progress > $OUT/$name-seed$S.log 2>&1 &
  done
  wait
  mkdir -p $OUT/$name && cp -r /tmp/$name-seed*/sweeps/budget-$variant/tiny-sd15 $OUT/$name/ 2>/dev/null
  tail -3 $OUT/$name-seed*.log
}
if want dmd2-curve; then curve dmd2-curve dmd2-4step 1000,2500,5000; fi
if want lcm-curve; then curve lcm-curve lcm-4step 500,1000,2000; fi
if want cell; then
  stamp table5-cell
  timeout 150 $PY -m harness.reproduce table5 --device cuda --scale full --seeds 0 --variants 4step --results-dir /tmp/r --no-progress > $OUT/cell.log 2>&1; echo rc=$?
  cp /tmp/r/table5/tiny-sd15/4step-4step-dpmpp-seed0.json $OUT/table5-4step-cell-h200.json 2>/dev/null
  $PY -c "
import json; d=json.load(open('$OUT/table5-4step-cell-h200.json')); t=d['training']
print({k: d.get(k) for k in ('eval_seconds','cell_wall_seconds')}, {k: d.get(k) for k in d if k.endswith('_seconds') and k not in ('eval_seconds','cell_wall_seconds')}, 'train s/it', t['seconds_per_iteration'], 'train wall', t['wall_seconds'], d['metrics'])"
fi
stamp end
