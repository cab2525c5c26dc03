"""SD-1.5 TDM profile on one GPU: GPU time per phase (CUDA events, iterations 2-4, no profiler),
then GPU time by kernel family and the top kernels (torch.profiler, iterations 6-7).

    python -c "from methods.common.random_pipelines import BUILDERS; BUILDERS['sd15']('/tmp/sd15')"
    printf 'a photo of a cat\na red car\n' > /tmp/prompts.txt
    python scripts/profile_sd15.py LABEL [key=value ...]     # e.g. LABEL=eager, or cl channels_last=true
    python scripts/profile_sd15.py graphed compile=true compile_scope=blocks channels_last=true \
        segments=stratified execution=cuda_graph                 # the fastest path, as replayed

Phase times are event to event on the GPU's stream, so they include idle gaps; the kernel families
are matched on kernel names (cuDNN's layout transposes fall under "conv").

With execution=cuda_graph the iterations from the third on are replays of one captured graph: there
are no phases to time inside it, so only the synchronised wall per iteration and the kernels of
two replays (iterations 6-7) are printed, with the GPU's busy share of their wall time. (CUPTI
reports the kernels a replayed graph runs; not yet run on a GPU.)
"""
import sys, collections, time, torch
from torch.profiler import profile, ProfilerActivity, schedule
import methods.tdm.train as T
import methods.tdm.trainer as TR
from methods.tdm.presets import resolve

overrides = sys.argv[2:]
# Replays never call train_step: under CUDA graphs iterations are counted where CapturedIterations is
# called, and phases are not timed (events cannot be recorded into a graph being captured).
graphed = "execution=cuda_graph" in overrides
cfg = resolve("sd15", ["teacher=/tmp/sd15", "prompts=/tmp/prompts.txt", "iterations=8", "export=false",
                       "checkpoint_every=0", "tracker=none", "log_every=1", "output_dir=/tmp/prof", "batch_size=16", *overrides])
it = {"n": 0}
phases = collections.defaultdict(float); pending = []
def timed(name, fn):
    def wrapper(*a, **k):
        if not 2 <= it["n"] <= 4:
            return fn(*a, **k)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); out = fn(*a, **k); e.record(); pending.append((name, s, e)); return out
    return wrapper
for name in () if graphed else ("rollout_segments", "segment_sample", "fake_score_step", "generator_step",
                                 "_backward", "_step"):
    setattr(TR, name, timed(name, getattr(TR, name)))
prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], schedule=schedule(wait=6, warmup=0, active=2))
import methods.tdm.graphs as G
owner, attr = (G.CapturedIterations, "__call__") if graphed else (T, "train_step")
real = getattr(owner, attr); walls = []
def wrapped(*a, **k):
    torch.cuda.synchronize(); t0 = time.perf_counter()
    out = real(*a, **k)
    torch.cuda.synchronize(); walls.append(time.perf_counter() - t0)
    for name, s, e in pending:
        phases[name] += s.elapsed_time(e) / 3
    pending.clear(); it["n"] += 1; prof.step(); return out
setattr(owner, attr, wrapped)
with prof:
    T.train(cfg, "cuda", show_progress=False)
print(f"({sys.argv[1]}) wall per iteration, synchronised: " + " ".join(f"{w*1e3:.0f}" for w in walls) + " ms")
if not graphed:
    print(f"GPU time per phase, mean of iterations 2-4 (sum {sum(phases.values()):.0f} ms):")
    for name, ms in phases.items():
        print(f"  {name:18s} {ms:8.1f} ms")
fam = collections.Counter(); rows = []
for e in prof.key_averages():
    t = getattr(e, "device_time_total", 0)
    if t <= 0 or e.device_type.name != "CUDA":
        continue
    # Annotations (the profiler's ProfilerStep#N, Optimizer.step#AdamW.step) span kernels counted on their own.
    if getattr(e, "is_user_annotation", False) or e.key.startswith("ProfilerStep") or "#" in e.key:
        continue
    n = e.key.lower()
    f = ("attention" if "flash" in n or "fmha" in n or "attention" in n or "efficient" in n else
         "adam/foreach" if "adam" in n or "foreach" in n or "multi_tensor" in n else
         "conv" if ("conv" in n or "implicit_gemm" in n or "dgrad" in n or "wgrad" in n or "fprop" in n
                    or "cudnn" in n) else
         "gemm/matmul" if any(s in n for s in ("gemm", "sm90", "cutlass", "xmma", "matmul", "nvjet")) else
         "norm" if "norm" in n else
         "copy/cast" if "copy" in n or "cast" in n else
         "elementwise" if "elementwise" in n or "vectorized" in n or "unrolled" in n or "reduce" in n else "other")
    fam[f] += t; rows.append((t, e.count, e.key[:120]))
total = sum(fam.values())
print(f"GPU kernel time over 2 profiled iterations: {total/1e3:.1f} ms"
      f" ({100 * total / 1e3 / (1e3 * sum(walls[6:8])):.0f} % of their synchronised wall time)")
for f, t in fam.most_common():
    print(f"  {f:12s} {t/1e3:9.1f} ms  {100*t/total:5.1f} %")
for t, c, k in sorted(rows, reverse=True)[:45]:
    print(f"{t/1e3:9.1f} ms {c:6d}x  {k}")
