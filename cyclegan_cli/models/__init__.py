"""A generator and the files it lives in: the networks (``architectures``: the ResNet generator, the PatchGAN
discriminator; their cost per frame in ``macs``), their weights files (``weights``: cyc checkpoints, safetensors, the reference ``.pth``), and what
an exported file is (``artifacts``: names, the export folder, sidecars, the weights digest, precision).

Imports only the shared modules at the top of ``cyclegan_cli``.
"""
