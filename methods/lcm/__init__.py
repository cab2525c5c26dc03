"""LCM (Luo et al., "Latent Consistency Models", 2023): latent consistency distillation with skipping
steps and an embedded guidance scale, on the shared training loop: the baseline of Table 1's LCM rows
and Fig. 8. It learns from captioned images, which the small world supplies.

    python -m methods.tdm.train --preset tiny-sd15-lcm-4step
"""
