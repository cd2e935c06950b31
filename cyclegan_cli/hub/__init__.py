"""Where weights and data come from: downloads (``download``: resumable, verified, atomic), the official
pretrained generators and datasets (``pretrained``, ``datasets``), and ``sources``: what a user's SOURCE names (a
file, a run, the latest run, a pretrained name).

May import ``models`` and the shared modules.
"""
