#!/usr/bin/env bash
# dev call 1: trainer equivalence on GPU, tiny-sd15 speed, old code's speed, one full Table 5 cell, SD-1.5 smoke
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, transformers, accelerate, peft; print(torch.__version__, diffusers.__version__, transformers.__version__, accelerate.__version__, peft.__version__)"
nproc
T0=$(date +%s)
stamp() { echo "=== $1 at +$(( $(date +%s) - T0 )) s"; }
stamp gpu-test
timeout 240 python3 -m pytest -m gpu tests/test_tdm_cuda.py -s -q -p no:cacheprovider > $OUT/gpu_test.log 2>&1; echo rc=$?; grep -E "largest|passed|failed|Error|error" $OUT/gpu_test.log | tail -15
stamp tiny-bench
timeout 150 python3 -m methods.tdm.bench --backbone tiny-sd15 --batch-size 256 --iterations 100 --compare execution=eager --no-reference --out $OUT/tiny.json > $OUT/tiny.log 2>&1; echo rc=$?; tail -6 $OUT/tiny.log
stamp old-code
(cd .old && PYTHONPATH=/tmp/site:$PWD timeout 100 python3 -m methods.tdm.train --preset tiny-sd15-4step iterations=40 checkpoint_every=0 export=false tracker=none output_dir=/tmp/old --no-progress > $OUT/old.log 2>&1; echo rc=$?; grep -E "seconds_per_iteration|samples_per_second|peak_memory" $OUT/old.log)
stamp table5-cell
timeout 200 python3 -m harness.reproduce table5 --device cuda --scale full --seeds 0 --variants 4step --results-dir /tmp/r --no-progress > $OUT/cell.log 2>&1; echo rc=$?; tail -3 $OUT/cell.log
python3 - <<'PY'
import json, glob
for f in sorted(glob.glob('/tmp/r/table5/tiny-sd15/*.json')):
    d = json.load(open(f)); t = d['training']
    print(f.split('/')[-1], {k: d.get(k) for k in ('eval_seconds', 'cell_wall_seconds', 'reference_seconds', 'sampling_seconds', 'scoring_seconds')},
          'train s/it', t.get('seconds_per_iteration'), 'wall', t.get('wall_seconds'), d['metrics'])
PY
stamp sd15
python3 -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
stamp sd15-built
timeout 120 python3 -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 10 --out $OUT/sd15-eager.json > $OUT/sd15-eager.log 2>&1; echo rc=$?; tail -5 $OUT/sd15-eager.log
stamp sd15-compile
timeout 300 python3 -m methods.tdm.bench --pipeline /tmp/sd15 --iterations 10 --no-reference --out $OUT/sd15-compile.json execution=compile channels_last=true > $OUT/sd15-compile.log 2>&1; echo rc=$?; tail -5 $OUT/sd15-compile.log
stamp end
