#!/usr/bin/env bash
# The speed measurements in results/bench/*-h200.json, in one go on one GPU (about 8 minutes on an H200):
#   bash scripts/bench-h200.sh      (writes to $OUT, default results/bench/new)
# The GPU equivalence test, tiny-sd15 graphs against eager, SD-1.5 eager beside the official pass structure,
# SD-1.5 with torch.compile + channels-last, with gradient checkpointing and with 2 micro-batches,
# and one full-scale Table 5 cell (TDM-4step, seed 0).
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false  # PYTHON=.venv/bin/python to use the project's environment
OUT=${OUT:-results/bench/new}; mkdir -p "$OUT"
T0=$(date +%s); stamp() { echo "=== $1 at +$(( $(date +%s) - T0 )) s"; }
summary() { ${PYTHON:-python3} -c "
import json,sys; d=json.load(open(sys.argv[1]))
keys=('execution','seconds_per_iteration','ms_per_sample_iteration','peak_memory_gib','achieved_tflops','speedup_vs_official')
print({k: d.get(k) for k in keys}); c=d.get('compared'); o=d.get('official_layout')
c and print('compared', {k: c.get(k) for k in keys + ('speedup_of_main_run',)})
o and print('official', {k: o.get(k) for k in keys + ('error',)})" $1; }
stamp gpu-test
timeout 200 ${PYTHON:-python3} -m pytest -m gpu tests/test_tdm_cuda.py -s -q -p no:cacheprovider > $OUT/gpu-test.log 2>&1; echo rc=$?; grep -E "relative difference|passed|failed|Error" $OUT/gpu-test.log | tail -8
stamp tiny
timeout 150 ${PYTHON:-python3} -m methods.tdm.bench --backbone tiny-sd15 --batch-size 256 --iterations 100 --compare execution=eager --no-reference --out $OUT/tdm-tiny-sd15-h200.json > $OUT/bench.log 2>&1; echo rc=$?; summary $OUT/tdm-tiny-sd15-h200.json
${PYTHON:-python3} -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
stamp sd15
timeout 150 ${PYTHON:-python3} -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 20 --out $OUT/tdm-sd15-h200.json >> $OUT/bench.log 2>&1; echo rc=$?; summary $OUT/tdm-sd15-h200.json
stamp sd15-compile
timeout 150 ${PYTHON:-python3} -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 20 --no-reference --out $OUT/tdm-sd15-compile-h200.json compile=true channels_last=true >> $OUT/bench.log 2>&1; echo rc=$?; summary $OUT/tdm-sd15-compile-h200.json
stamp sd15-checkpointing
timeout 100 ${PYTHON:-python3} -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 20 --no-reference --out $OUT/tdm-sd15-checkpointing-h200.json gradient_checkpointing=true >> $OUT/bench.log 2>&1; echo rc=$?; summary $OUT/tdm-sd15-checkpointing-h200.json
stamp sd15-accumulation
timeout 100 ${PYTHON:-python3} -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 20 --no-reference --out $OUT/tdm-sd15-accumulation-h200.json grad_accumulation=2 >> $OUT/bench.log 2>&1; echo rc=$?; summary $OUT/tdm-sd15-accumulation-h200.json
stamp table5-cell
timeout 150 ${PYTHON:-python3} -m harness.reproduce table5 --device cuda --scale full --seeds 0 --variants 4step --results-dir /tmp/r --no-progress > $OUT/cell.log 2>&1; echo rc=$?
cp /tmp/r/table5/tiny-sd15/4step-4step-dpmpp-seed0.json $OUT/table5-4step-cell-h200.json 2>/dev/null
${PYTHON:-python3} -c "
import json; d=json.load(open('$OUT/table5-4step-cell-h200.json')); t=d['training']
print({k: d.get(k) for k in ('eval_seconds','cell_wall_seconds')}, {k: d.get(k) for k in d if k.endswith('_seconds') and k not in ('eval_seconds','cell_wall_seconds')}, 'train s/it', t['seconds_per_iteration'], 'train wall', t['wall_seconds'], d['metrics'])"
stamp end
