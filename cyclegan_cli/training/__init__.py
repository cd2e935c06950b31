"""``cyc train``'s work: the loop (``loop``), its settings (``config``: no torch), the state and the canonical
step (``state``), the training images (``data``), checkpoints and resume (``checkpoints``), torchrun ranks
(``distributed``), the log and ``metrics.csv`` (``log``), the labelled sample grids (``samples``) and the
held-out scores (``held_out``).

May import ``evaluation`` and the layers below it.
"""
