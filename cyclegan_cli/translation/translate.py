"""``cyc run`` end to end: plan the jobs, load the model, choose the engine, run the pipeline, report.

The CLI layer (:mod:`cyclegan_cli.commands.run`) turns options into :class:`RunOptions` and renders the
:class:`RunReport`; everything between is here.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from cyclegan_cli import registry
from cyclegan_cli.devices import resolve_device
from cyclegan_cli.errors import UsageError
from cyclegan_cli.export.quantize import MIN_PSNR
from cyclegan_cli.framing import MIN_SIDE
from cyclegan_cli.hub.sources import load_model_source
from cyclegan_cli.models.run_folder import RUNS_DIR
from cyclegan_cli.plugin_api import Frame, WriteOptions
from cyclegan_cli.translation.engine_choice import choose_engine, prepare_int8, workload
from cyclegan_cli.translation.jobs import Job, JobResult, Plan, Progress, plan_jobs, probe
from cyclegan_cli.translation.pipeline import QUEUE_FRAMES, Pipeline, PipelineStats, queue_frames
from cyclegan_cli.translation.sharding import parse_shard, scheduler_hint
from cyclegan_cli.translation.temporal import StableSettings


@dataclass
class RunOptions:
    inputs: list[str]
    direction: str = "AtoB"
    out: str | None = None
    ext: str | None = None
    overwrite: bool = False
    skip_existing: bool = False
    checkpoint: str | None = None
    runs_dir: str = RUNS_DIR
    engine: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    min_psnr: float = MIN_PSNR  # int8: the gate, dB against fp32
    batch_size: int = 1
    max_frames: int | None = None
    tile: int | None = None  # strips of N rows; 0: never; None: where a frame would not fit whole
    compare: bool = False
    size: str | None = None
    segments: int | None = None  # cut each video into this many pieces (cyc join puts them together)
    shard: str | None = None  # "I/N" or "auto": this process's share of the inputs
    stable: StableSettings | None = None  # temporally stable video (temporal.py); None: frame by frame
    write: WriteOptions = field(default_factory=WriteOptions)


@dataclass
class RunReport:
    plan: Plan
    stats: PipelineStats
    engine: str
    reason: str
    setup_seconds: float  # model load + engine build + first batch: the time to first frame


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """``--size``: ``N`` scales the shorter side to N, ``WxH`` resizes exactly."""
    if text is None:
        return None
    try:
        if "x" in text.lower():
            width, height = (int(v) for v in text.lower().split("x"))
            if min(width, height) >= MIN_SIDE:
                return width, height
        elif int(text) >= MIN_SIDE:
            return int(text)
    except ValueError:
        pass
    raise UsageError(
        f"--size {text}: use N (shorter side, in pixels) or WxH, at least {MIN_SIDE} px, e.g. 256 or 640x360"
    )


def _target_size(size, width: int, height: int) -> tuple[int, int]:
    if isinstance(size, tuple):
        return size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resizer(size):
    import cv2

    def resize(frame: Frame) -> Frame:
        height, width = frame.image.shape[:2]
        target = _target_size(size, width, height)
        if target == (width, height):
            return frame
        interpolation = cv2.INTER_AREA if target[0] < width else cv2.INTER_CUBIC
        image = cv2.resize(frame.image, target, interpolation=interpolation)
        alpha = None if frame.alpha is None else cv2.resize(frame.alpha, target, interpolation=interpolation)
        return dataclasses.replace(frame, image=image, alpha=alpha)

    return resize


def frame_sizes(jobs: list[Job], max_frames: int | None, size) -> list[tuple[int, int, int]]:
    """(frames, width, height) per job as they will reach the engine, read from headers, not decoded."""
    sizes = []
    for job in jobs:
        info = probe(job, max_frames)
        if info is None:
            continue
        frames, wh = info.frame_count or 1, (info.width, info.height)
        if max_frames is not None:
            frames = min(frames, max_frames)
        if size is not None:
            wh = _target_size(size, *wh)
        sizes.append((frames, *wh))
    return sizes


def translate(options: RunOptions, progress: Progress | None = None, say=print) -> RunReport:
    shard = parse_shard(options.shard)
    if shard is None and (hint := scheduler_hint()):
        say(hint)
    plan = plan_jobs(
        options.inputs,
        direction=options.direction,
        out=options.out,
        ext=options.ext,
        overwrite=options.overwrite,
        skip_existing=options.skip_existing,
        segments=options.segments,
        shard=shard,
        max_frames=options.max_frames,
    )
    for line in plan.notes:
        say(line)
    size = parse_size(options.size)
    if not plan.jobs:
        why = "this shard's files are all done" if plan.skipped_existing else "nothing to do"
        return RunReport(plan, PipelineStats(), "-", why if shard is None else f"shard {shard}: {why}", 0.0)
    started = time.perf_counter()
    model, note = load_model_source(options.checkpoint, options.runs_dir, options.direction)
    for line in (note, model.info and model.info.distilled_line()):
        if line:
            say(line)
    device = resolve_device(options.device)
    sizes = frame_sizes(plan.jobs, options.max_frames, size)
    per_size = workload(sizes, model.info.relative_work if model.info is not None else 1.0)
    if progress is not None:
        unknown = len(plan.jobs) - len(sizes)  # unreadable headers: counted as one frame each, reported later
        progress.planned(sum(frames for frames, _, _ in sizes) + unknown)
    choice = choose_engine(options.engine, model, device, options.precision, per_size, options.min_psnr)
    depth = min((queue_frames(width, height) for _, width, height in sizes), default=QUEUE_FRAMES)
    plans = strip_plans(sizes, choice, device, model, options, depth)  # before any work: a frame that cannot fit stops
    choice = prepare_int8(  # int8 quantized from the job's own frames, when the choice says so
        choice,
        model,
        plan.jobs,
        min_psnr=options.min_psnr,
        transform=_resizer(size) if size is not None else None,
        max_frames=options.max_frames,
        say=say,
    )
    engine_cls = registry.load("engines", choice.name)
    if model.exported is None:  # the engine runs the prebuilt file the choice found (None: the weights)
        model = dataclasses.replace(model, exported=choice.file)
    say(f"engine: {choice.name} {choice.precision} on {device} ({choice.reason})")
    engine = engine_cls(model, device=device, precision=choice.precision, batch_size=options.batch_size)
    if plans:
        engine = _in_strips(engine, plans, say)
    first = _first_frame_size(per_size)
    if first is not None:
        engine.warmup(first[1], first[0])
    setup = time.perf_counter() - started
    pipeline = Pipeline(
        engine,
        options.write,
        batch_size=options.batch_size,
        max_frames=options.max_frames,
        compare=options.compare,
        transform=_resizer(size) if size is not None else None,
        progress=progress,
        stable=options.stable,
        queue_frames=depth,
    )
    if options.stable is not None and options.stable.enabled and any(j.reader.kind == "video" for j in plan.jobs):
        say(_stable_note(options.stable, engine))
    stats = pipeline.run(plan.jobs)
    return RunReport(plan, stats, engine.describe(), choice.reason, setup)


def strip_plans(sizes, choice, device: str, model, options: RunOptions, depth: int) -> dict:
    """The frame sizes that go in strips, with their plans (:func:`cyclegan_cli.translation.memory.plan_frames`,
    counting the frames in flight: ``depth`` in each queue, and a video's encoder); a size that cannot fit as asked
    stops the run here, before any engine is built or frame written."""
    from cyclegan_cli.translation.memory import available_bytes, listed_sizes, plan_frames, stream_bytes

    free = available_bytes(device)
    ngf = model.info.ngf if model.info is not None else 64
    frames: dict[tuple[int, int], list[int]] = {}  # size -> the frame count of each job of that size
    for count, width, height in sizes:
        frames.setdefault((width, height), []).append(count)
    plans = {}
    for (width, height), counts in frames.items():
        stream = stream_bytes(width, height, sum(counts), max(counts) > 1, depth)
        plan = plan_frames(
            choice.name, choice.precision, width, height, free, options.tile, ngf, options.batch_size, stream
        )
        if plan.strip_rows is not None:
            plans[(width, height)] = plan
    if plans and model.generator is None:
        raise UsageError(
            f"{model.path}: frames of {listed_sizes(plans)} go in strips, which run the "
            "generator's weights, not an exported file: give the weights (a run, .safetensors or .pth)"
        )
    return plans


def _in_strips(engine, plans: dict, say):
    """``engine``, with the frame sizes of ``plans`` sent through strips; said once per size."""
    from cyclegan_cli.translation.strips import InStrips

    for frames in plans.values():
        say(frames.line())
    return InStrips(engine, plans)


def _stable_note(stable: StableSettings, engine) -> str:
    parts = []
    if stable.hold > 0:
        parts.append(f"still regions held within {stable.hold:g} grey levels")
    if stable.blend > 0:
        parts.append(f"motion-compensated blending ({stable.blend:g})")
    if stable.norm_momentum > 0:
        if engine.carries_statistics:
            parts.append(f"carried norm statistics (momentum {stable.norm_momentum:g}{_unless_in_strips(engine)})")
        else:
            parts.append(f"no carried norm statistics (the {engine.name} engine, or this generator's norms, cannot)")
    return "stable video: " + "; ".join(parts) + ", reset at scene cuts"


def _unless_in_strips(engine) -> str:
    """Frames in strips take their own frame's exact statistics: carrying them across frames would need the
    whole frame's activations of the previous frame, which strips never hold at once."""
    from cyclegan_cli.translation.memory import listed_sizes
    from cyclegan_cli.translation.strips import InStrips

    if not isinstance(engine, InStrips):
        return ""
    return f"; not in the {listed_sizes(engine.plans)} frames in strips: their own statistics"


def _first_frame_size(per_size) -> tuple[int, int] | None:
    """The most common frame size: warming it up is what makes the first frame's time honest to report.

    Sizes too small to translate are left out: the pipeline reports those files, they must not stop the run here.
    """
    usable = {size: work for size, work in per_size.items() if min(size) >= MIN_SIDE}
    return max(usable, key=usable.get) if usable else None


def failed(results: list[JobResult]) -> list[JobResult]:
    return [r for r in results if r.status in ("failed", "interrupted")]
