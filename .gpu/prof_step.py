"""Profile one eager TDM iteration (the 4th) of a preset; print where host and GPU time go."""
import sys, torch
import methods.tdm.train as T
from methods.tdm.presets import resolve


preset, *over = sys.argv[1:]
calls = []
real = T.train_step
def wrapped(*a, **k):
    calls.append(1)
    if len(calls) != 4:
        return real(*a, **k)
    torch.cuda.is_available() and torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = real(*a, **k)
        torch.cuda.is_available() and torch.cuda.synchronize()
    ka = prof.key_averages()
    print(ka.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=50))
    print(ka.table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50))
    return out
T.train_step = wrapped
cfg = resolve(preset, ["iterations=6", "checkpoint_every=0", "export=false", "tracker=none", "output_dir=/tmp/prof", "log_every=1", *over])
s = T.train(cfg, "cuda" if torch.cuda.is_available() else "cpu", show_progress=False)
print({k: s[k] for k in ("seconds_per_iteration", "peak_memory_gib", "execution", "data_workers")})
