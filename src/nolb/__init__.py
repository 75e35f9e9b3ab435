"""nolb: No One Left Behind -- long-tailed recognition that lifts the worst classes.

An implementation of "No One Left Behind: Improving the Worst Categories in Long-Tailed
Learning" (Du & Wu, CVPR 2023): worst-class metrics, stage-1 base models, stage-2
Geometric Mean Loss classifier re-training on a frozen backbone, and the stage-3 ensemble.
"""

__version__ = "0.1.0"
