"""cyc: train CycleGAN translators, compile them into fast engines, translate images and videos.

The module map, along the data paths (``engines/`` and ``plugins/`` install as ``cyc_engines`` and
``cyc_plugins``)::

    cyc train   cmd_train ─> train: setup, then the loop ──────────────> checkpoints (save, resume)
                              │  data: scan A/B, decode, resize/crop/flip     │
                              │  models: ResnetGenerator, PatchGAN            └─> weights: G_AB/G_BA.safetensors
                              │  train_step: the canonical G step, then D step
                              └─ distributed: torchrun ranks, gradient all-reduce hooks, agreed stops

    cyc export  cmd_export ─> export: weights ─> onnx_graph (ONNX, fp16 with fp32 InstanceNorm, parity check)
                                                   └─> tensorrt_build (engine + sidecar, on an NVIDIA GPU)

    cyc run     cmd_run ─> run: jobs.plan_jobs (inputs -> Job per file, via the registry's readers/writers;
                             │    segments: videos cut into pieces; sharding: this process's share)
                             │  engine_choice (which model, which engine and why) ─> cyc_engines.*
                             │    pretrained (+ download, cache): official models by name
                             └─> pipeline: reader thread ─> batcher + engine (+ temporal: --stable) ─> writer
                                  thread ─> report; cyc_plugins.images / .video (+ .audio) decode and encode
    cyc eval    cmd_eval ─> quality: each direction's test images through run.translate (as cyc run does) ─> FID and
                              KID by torch-fidelity from its FID Inception network (weights fetched by download,
                              loaded weights-only first; the real images' features cached per folder)
    cyc join    cmd_join ─> segments.join: a video's pieces remuxed in order (the video writer's join)
    cyc datasets / pretrained / doctor: datasets, pretrained, doctor (what runs here, and why)

Shared underneath: ``plugin_api`` (the Reader / Writer / Engine interfaces), ``registry`` (entry points),
``errors`` (domain errors and exit codes, turned into one line in ``cli``), ``artifacts`` (what an exported
file is: names, the export folder, sidecars, the weights digest, precision; export writes, engines read),
``atomic`` (temp file, then rename), ``framing`` (pad, normalise, crop, round), ``devices`` (device, precision, CPU units), ``options``.
The facts the code relies on (the official weight layout, TensorRT's typing rules, CPU figures) are in
``docs/internals.md``.
"""

__version__ = "0.1.0"
