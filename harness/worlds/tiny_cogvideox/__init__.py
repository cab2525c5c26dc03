"""tiny-cogvideox: the small video world, as tiny-sd15 is for images (Table 4's path).

So far: `grammar` (captions that name each object's motion), `dataset` (clips rendered by the
tiny-sd15 renderer, frame by frame), `models` (a CogVideoXPipeline of the real classes, only
small, on which the CogVideoX trainer runs), `classifier` (per-frame attributes and per-quadrant
motion) and `build` (trains the VAE, the classifier and the teacher). No build is shipped yet, and
the world's judge and metrics are still to come.
"""
