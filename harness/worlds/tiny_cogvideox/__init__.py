"""tiny-cogvideox: the small video world, as tiny-sd15 is for images (issue: Table 4's path).

So far its procedural clips: `grammar` (captions that name each object's motion) and `dataset`
(clips rendered by the tiny-sd15 renderer, frame by frame). A CogVideoX-shaped teacher trained on
them, a classifier of per-frame attributes and motion, and the world's metrics are still to come.
"""
