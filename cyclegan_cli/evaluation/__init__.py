"""Scoring translators: FID and KID from the FID Inception network (``quality``), for ``cyc eval`` and for
training's held-out scores.

May import ``translation`` and the layers below it.
"""
