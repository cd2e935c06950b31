"""cyc: train CycleGAN translators, compile them into fast engines, translate images and videos.

The module map, along the data paths (``engines/`` and ``plugins/`` install as ``cyc_engines`` and
``cyc_plugins``)::

    cyc train   cmd_train ─> train: setup, then the loop ──────────────> checkpoints (save, resume)
                 │            │  training_data: scan A/B, decode, crop, flip  │
                 │            │  samples: the labelled sample grids           │
                 │            │  train_eval: --eval-every, KID/FID on testA/B │
                 │            │  train_log: the bar, metrics.csv, TensorBoard │
                 │            │  train_state: the state; train_step, the      └─> weights: G_AB/G_BA.safetensors
                 │            │    canonical G step, then D step (models: ResnetGenerator, PatchGAN)
                 │            └─ distributed: torchrun ranks (one process: Ranks()), gradient all-reduce, agreed stops
                 └─> train_config (no torch): the settings and the options' defaults, their checks, what a resumed
                       run keeps (train and checkpoints read it too)

    cyc export  cmd_export ─> export: sources ─> weights ─> onnx_graph (ONNX, fp16 with fp32 InstanceNorm, parity
                                                     │        check) └─> tensorrt_build (engine, on an NVIDIA GPU)
                                                     └─> quantize (int8: openvino_graph + NNCF, measured against fp32)

    cyc run     cmd_run ─> translate: jobs.plan_jobs (inputs -> Job per file, via the registry's readers/writers;
                             │    segments: videos cut into pieces; sharding: this process's share)
                             │  sources (which weights: a path, the latest run, or pretrained + download, cache)
                             │  engine_choice (which engine and why; break_even: the measured figures) ─> cyc_engines.*
                             └─> pipeline: reader thread ─> batcher + engine (+ temporal: --stable) ─> writer
                                  thread ─> report; cyc_plugins.images / .video (+ .audio) decode and encode
    cyc eval    cmd_eval ─> quality: each direction's test images through translate (as cyc run does) ─> FID and
                              KID by torch-fidelity from its FID Inception network (weights fetched by download,
                              loaded weights-only first; the real images' features cached per folder)
    cyc join    cmd_join ─> segments.join: a video's pieces remuxed in order (the video writer's join)
    cyc datasets / pretrained / doctor: datasets, pretrained, doctor (what runs here, and why)

Shared underneath: ``plugin_api`` (the Reader / Writer / Engine interfaces), ``registry`` (entry points),
``errors`` (domain errors and exit codes, turned into one line in ``cli``), ``artifacts`` (what an exported
file is: names, the export folder, sidecars, the weights digest, precision; export writes, engines read),
``atomic`` (temp file, then rename), ``framing`` (pad, normalise, crop, round), ``devices`` (device, precision, CPU
units), ``pace`` (when a plain progress line is due), ``options``.
The facts the code relies on (the official weight layout, TensorRT's typing rules, CPU figures) are in
``docs/internals.md``.
"""

__version__ = "0.1.0"
