"""tiny-cogvideox: the small video world, as tiny-sd15 is for images (Table 4's path).

So far: `grammar` (captions that name each object's motion), `dataset` (clips rendered by the
tiny-sd15 renderer, frame by frame) and `models` (a CogVideoXPipeline of the real classes, only
small, on which the CogVideoX trainer runs). A teacher trained on the clips, a classifier of
per-frame attributes and motion, and the world's metrics are still to come.
"""
