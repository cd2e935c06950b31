"""``cyc train``'s work: the loop (``loop``), its settings (``config``: no torch), the state and the canonical
step (``state``), the training images (``data``), checkpoints and resume (``checkpoints``), torchrun ranks
(``distributed``), the log and ``metrics.csv`` (``log``), the labelled sample grids (``samples``) and the
held-out scores (``held_out``). ``cyc distill``'s work beside it: its settings and presets (``distill_config``), its
material (``distill_data``: frames, the teacher's outputs, the baselines), the student and its step (``distill``),
and its run (``distill_run``: the folder, the loop, the log, the fidelity).

May import ``evaluation`` and the layers below it.
"""
