"""DMD2 (Yin et al., "Improved Distribution Matching Distillation for Fast Image Synthesis", 2024) on the
shared training loop: the paper's direct comparator, re-trained for Table 1's 4-step SD-1.5 row as
the TDM paper's App. F.1 says (DMD2 released no 4-step SD-1.5 model). Without its GAN term.

    python -m methods.tdm.train --preset tiny-sd15-dmd2-4step      # the small world
    python -m methods.tdm.train --preset dmd2-sd15                  # SD-1.5, App. F.1's recipe
"""
