#!/usr/bin/env bash
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
T0=$(date +%s); stamp() { echo "=== $1 at +$(( $(date +%s) - T0 )) s"; }
tiny() { timeout $1 python3 -m methods.tdm.train --preset tiny-sd15-4step checkpoint_every=0 export=false tracker=none output_dir=/tmp/t$RANDOM --no-progress "${@:2}" 2>&1 | grep -E '"(seconds_per_iteration|peak_memory_gib|execution|data_workers)"' | tr -d '\n'; echo; }
stamp tiny-eager-w0; tiny 60 iterations=30 execution=eager data_workers=0
stamp tiny-eager-w4; tiny 60 iterations=30 execution=eager data_workers=4
stamp tiny-graph-w0; tiny 60 iterations=60 data_workers=0
stamp tiny-profile-eager; timeout 90 python3 .gpu/prof_step.py tiny-sd15-4step execution=eager 2>&1 | grep -v Warn | tail -40
stamp sd15-build; python3 -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')" > /dev/null 2>&1
printf "a cat\na dog\n" > /tmp/p.txt; stamp sd15-profile-eager; timeout 120 python3 .gpu/prof_step.py sd15 teacher=/tmp/sd15 prompts=/tmp/p.txt batch_size=16 2>&1 | grep -v Warn | tail -40
stamp tiny-graph-compile; tiny 240 iterations=80 compile=true
stamp end
