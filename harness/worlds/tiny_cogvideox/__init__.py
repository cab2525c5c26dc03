"""tiny-cogvideox: the small video world, as tiny-sd15 is for images (Table 4's path).

`grammar` (captions that name each object's motion), `dataset` (clips rendered by the tiny-sd15
renderer, frame by frame), `models` (a CogVideoXPipeline of the real classes, only small, on which
the CogVideoX trainer runs), `classifier` (per-frame attributes and per-quadrant motion), `build`
(trains the VAE, the classifier and the teacher), `judge` (held-out prompts, real references and
the world's metrics, harness.metrics.video_world) and `evaluate` (the teacher by step count).
The build the tables read is `location.py`'s: `assets/` (pipeline/, classifier/, build.json, as the
build writes them), or the folder $TDM_TINY_COGVIDEOX_WORLD names. `provider` is what training
uses of the world (`teacher=tiny-cogvideox prompts=tiny-cogvideox`, the `tiny-cogvideox-*` presets),
and Table 4 runs on it: `python -m harness.reproduce table4 --world tiny-cogvideox`.
"""
