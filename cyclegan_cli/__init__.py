"""cyc: train CycleGAN translators, compile them into fast engines, translate images and videos.

The rooms, each allowed to import only the ones listed before it (``tests/test_structure.py`` checks)::

    (top level)   shared by every room and by plugins: errors, atomic, framing, imageio, files, pace, cache,
                  measured, devices, registry
    models/       the networks, their weights files, what an exported file is
    plugin_api    the interfaces of engines, readers and writers, and the model they are handed
    cyc_plugins   (plugins/) the image, video and audio readers and writers
    hub/          downloads, the pretrained generators and datasets, what a SOURCE names
    export/       cyc export: ONNX, OpenVINO, TensorRT, int8
    cyc_engines   (engines/) torch, ONNX Runtime, OpenVINO, TensorRT
    translation/  cyc run: jobs, the engine choice, the pipeline, --stable, segments and shards
    evaluation/   FID and KID
    training/     cyc train: the loop, its state, data, checkpoints, ranks, log and samples
    commands/     the Click layer, one module per subcommand
    cli           the entry point

Each subpackage's ``__init__`` says what it holds. The facts the code relies on (the official weight layout,
TensorRT's typing rules, CPU figures) are in ``docs/internals.md``.
"""

__version__ = "0.1.0"
