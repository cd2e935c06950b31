"""cyc: train CycleGAN translators, compile them into fast engines, translate images and videos."""

__version__ = "0.1.0"
