"""Training as several processes: ``torchrun --nproc-per-node N -m cyclegan_cli train ...`` (one machine or many).

Data-parallel on PyTorch's own engine, ``torch.distributed``: one process per GPU (``LOCAL_RANK`` picks it) or
several on CPUs; NCCL carries the gradients of GPU tensors, gloo everything on the CPU (the process group is
``cpu:gloo,cuda:nccl`` where CUDA and NCCL exist, else ``gloo``). Every rank holds the whole model; each trains
on its own share of the data, and the gradients are averaged over the ranks after each backward pass, so every
optimizer step is the same on every rank and the weights stay identical (checked at every checkpoint).

Why a gradient all-reduce and not ``DistributedDataParallel``: :func:`cyclegan_cli.training.state.train_step` is the
model, and it stays as it is. It switches the discriminators' gradients off for the generators' step, runs each
generator three times and each discriminator once before one backward pass, and then the discriminators alone.
DDP refuses that as it stands (a module used several times before one backward, parameters that get no gradient
in a backward) unless it is told ``find_unused_parameters`` (a graph walk every step) or ``static_graph`` (which
records the first iterations and must then never change), it wraps the modules (``module.`` prefixes in every
state dict: the checkpoint and the official weight layout would change), and its forward must be the one called,
which the step does through ``s.forward`` (compiled with ``--compile``). Instead, :class:`GradientAllReduce`
hooks each optimizer's parameters with ``register_post_accumulate_grad_hook``: when a parameter's gradient is
complete in a backward pass it joins a bucket (about 25 MiB, in reverse parameter order, as DDP's buckets);
a full bucket is all-reduced at once, asynchronously, in a fixed order, while the backward pass goes on; a
callback queued on the autograd engine waits for them at the end of the backward pass and divides by the number
of ranks. So ``backward()`` returns the mean gradient of all ranks, before the grad scaler or the optimizer
sees anything: fp16's scaler finds the same infinities on every rank and skips the same steps, the fused Adam is
untouched, the modules are untouched, and one process has no hook at all.

What else differs from one process, all of it here or in the loop: the data (each rank its own share of the
epoch's order, :class:`cyclegan_cli.training.data.EpochBatches`), the replay pools (one per rank, seeded by the rank),
the logged losses (one all-reduce per step carries every rank's losses and its stop flag: the mean is logged, and
a Ctrl-C on any rank stops all of them after the same step), checkpoints (every rank's pools and random state
gathered into rank 0's file; the others wait while it writes), and failures: each collective is bounded by the
process group's timeout (``--dist-timeout``), and a rank that loses contact with the others (one died, hung, or
stopped on an error of its own) exits 1 saying so, keeping the last checkpoint. An error that every rank meets
alike (a usage error, NaN losses) is reported once, by rank 0; the other ranks exit with its code, silently.
"""

from __future__ import annotations

import functools
import io
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch

from cyclegan_cli.errors import CycError, UsageError, first_line
from cyclegan_cli.training.config import DEFAULT_TIMEOUT_S

BUCKET_BYTES = 25 * 2**20  # gradients all-reduced together (DDP's default bucket size)
_timeout_text = "--dist-timeout"  # set by start(), for the messages of failed collectives


class RanksLost(CycError):
    """A collective failed: another rank died, hung past the timeout, or stopped on an error of its own."""

    exit_code = 1


class RankFailed(CycError):
    """Rank 0's report of a failure on another rank (named in the message), with that failure's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ReportedElsewhere(RankFailed):
    """An error rank 0 reports for every rank: this rank stops with the same exit code and prints nothing."""


def reported(ranks: Ranks, error: CycError) -> CycError:
    """The error to raise for a failure every rank meets alike: ``error`` itself on rank 0 (or in one process),
    a silent :class:`ReportedElsewhere` with its exit code on the others."""
    if ranks.main:
        return error
    return ReportedElsewhere(f"rank {ranks.rank}: stopped with rank 0: {error}", error.exit_code)


@dataclass
class Ranks:
    """This process's place among the ranks of a distributed run.

    ``Ranks()`` is one process, rank 0 of 1: every function here takes it and then does what one process does,
    with no collective, so the loop calls them alike for one process and for several."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # ranks on this machine
    backend: str | None = None  # None: one process, no process group
    timeout_s: float = DEFAULT_TIMEOUT_S
    reducers: list[GradientAllReduce] = field(default_factory=list)

    @property
    def main(self) -> bool:
        """Whether this process shows and writes: rank 0 (one process is)."""
        return self.rank == 0

    @property
    def alone(self) -> bool:
        """One process: nothing to exchange."""
        return self.world == 1

    def timeout_text(self) -> str:
        if self.timeout_s == DEFAULT_TIMEOUT_S:
            return "--dist-timeout (30 min by default)"
        return f"--dist-timeout {self.timeout_s:g}s"


# --- joining and leaving ---------------------------------------------------------------------------------------


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise UsageError(f"WORLD_SIZE is set but {name} is not: start the ranks with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a whole number") from None


def env_ranks() -> tuple[int, int, int, int] | None:
    """``(rank, world, local_rank, local_world)`` from torchrun's environment; None for one process."""
    if "WORLD_SIZE" not in os.environ:
        return None
    world = _env_int("WORLD_SIZE")
    if world <= 1:
        return None
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not (0 <= rank < world and 0 <= local_rank < local_world):
        raise UsageError(f"RANK {rank} / LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise UsageError(f"WORLD_SIZE is {world} but {name} is not set: start the ranks with torchrun")
    return rank, world, local_rank, local_world


def env_rank() -> int:
    """This process's rank under torchrun (0 for one process), for the command line's messages."""
    try:
        found = env_ranks()
    except UsageError:
        return 0
    return 0 if found is None else found[0]


def start(timeout_s: float | None) -> Ranks:
    """Join the other ranks (torchrun's environment), or ``Ranks()`` for one process. The CUDA device is chosen
    later, with the run's device (:func:`rank_device`), so a run on CPUs never touches the GPUs."""
    found = env_ranks()
    if found is None:
        return Ranks()
    import torch.distributed as dist

    rank, world, local_rank, local_world = found
    if not dist.is_available():
        raise UsageError("this build of PyTorch has no torch.distributed: train in one process")
    if timeout_s is not None and not timeout_s > 0:
        raise UsageError(f"--dist-timeout must be a positive number of seconds (got {timeout_s})")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    ranks = Ranks(rank, world, local_rank, local_world, backend, timeout_s)
    global _timeout_text
    _timeout_text = ranks.timeout_text()
    try:
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
    except (RuntimeError, ValueError) as exc:
        raise RanksLost(
            f"rank {rank}: could not join the other {world - 1} ranks at {where} within {_timeout_text} "
            f"({first_line(exc, 200)})"
        ) from None
    return ranks


def as_ranks(timeout_s: float | None, console, work):
    """``work(console, ranks)`` as this process's rank: joined to the others first (:func:`start`; one process
    alone outside torchrun), left at the end. Only rank 0 speaks: the others get a quiet console."""
    ranks = start(timeout_s)
    if not ranks.main:
        from rich.console import Console

        console = Console(quiet=True)
    lost = False
    try:
        return work(console, ranks)
    except RanksLost:
        lost = True
        raise
    finally:
        finish(ranks, lost)


def finish(ranks: Ranks, lost: bool = False) -> None:
    """Leave the process group (not after a failed collective: the process is about to exit anyway, and a
    group whose peer is gone may block on its way down)."""
    if ranks.alone:
        return
    import torch.distributed as dist

    for reducer in ranks.reducers:
        reducer.remove()
    ranks.reducers.clear()
    if not lost and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str, ranks: Ranks) -> str:
    """The device of this rank: ``cuda`` (or any ``cuda:N``) becomes ``cuda:LOCAL_RANK``; one process keeps it."""
    if ranks.alone:
        return device
    if device.startswith("cuda"):
        count = torch.cuda.device_count()
        if ranks.local_rank >= count:
            raise UsageError(
                f"LOCAL_RANK {ranks.local_rank} but this machine shows {count} CUDA device(s): start at most "
                f"{count} ranks per machine (torchrun --nproc-per-node {count})"
            )
        torch.cuda.set_device(ranks.local_rank)
        return f"cuda:{ranks.local_rank}"
    if device != "cpu":
        raise UsageError(f"--device {device}: training as several ranks needs CUDA GPUs (NCCL) or CPUs (gloo)")
    return device


def describe(ranks: Ranks, device: str, batch_size: int, lr: float, steps_per_epoch: int) -> str:
    """The line a distributed run starts with."""
    how = "NCCL" if device.startswith("cuda") else "gloo"
    return (
        f"Training as {ranks.world} ranks ({ranks.local_world} on this machine, {how} on {device.split(':')[0]}): "
        f"batch {batch_size} per rank, global batch {batch_size * ranks.world}; lr {lr:g} (not scaled with the "
        f"batch); {steps_per_epoch} steps per epoch."
    )


def ranks_text(world: int) -> str:
    return "1 process" if world == 1 else f"{world} ranks"


# --- collectives (CPU tensors: gloo; each one bounded by the group's timeout) ----------------------------------


def _collective(fn, *args, **kwargs):
    """Run one collective; a failure (a peer gone, a timeout) becomes :class:`RanksLost`."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:  # DistBackendError and gloo's own errors are RuntimeErrors
        rank = os.environ.get("RANK", "?")
        raise RanksLost(
            f"rank {rank}: lost contact with the other ranks ({first_line(exc, 200)}): a rank stopped on an error of "
            f"its own (its message says why), died, or hung for longer than {_timeout_text}"
        ) from None


def _padded(ranks: Ranks, data: bytes) -> tuple[list, int, torch.Tensor]:
    """Every rank's byte count, the longest, and this rank's bytes padded to it: collectives need equal sizes."""
    import torch.distributed as dist

    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(ranks.world)]
    _collective(dist.all_gather, sizes, torch.tensor([len(data)], dtype=torch.int64))
    longest = max(1, max(int(size) for size in sizes))
    mine = torch.zeros(longest, dtype=torch.uint8)
    if data:
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return sizes, longest, mine


def _all_gather_bytes(ranks: Ranks, data: bytes) -> list[bytes]:
    import torch.distributed as dist

    sizes, longest, mine = _padded(ranks, data)
    gathered = [torch.empty(longest, dtype=torch.uint8) for _ in range(ranks.world)]
    _collective(dist.all_gather, gathered, mine)
    return [bytes(t[: int(size)].numpy()) for t, size in zip(gathered, sizes)]


def _gather_bytes(ranks: Ranks, data: bytes) -> list[bytes] | None:
    """Every rank's bytes on rank 0 (in rank order); None on the others."""
    import torch.distributed as dist

    sizes, longest, mine = _padded(ranks, data)
    gathered = [torch.empty(longest, dtype=torch.uint8) for _ in range(ranks.world)] if ranks.main else None
    _collective(dist.gather, mine, gathered, dst=0)
    if not ranks.main:
        return None
    return [bytes(t[: int(size)].numpy()) for t, size in zip(gathered, sizes)]


def gather(ranks: Ranks, value: dict) -> list[dict] | None:
    """Every rank's ``value`` (tensors, numbers, strings, lists, dicts) on rank 0, in rank order (rank 0's own
    object first); None on the others. Read back with ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    if not ranks.main:
        torch.save(value, buffer)
    gathered = _gather_bytes(ranks, buffer.getvalue())
    if gathered is None:
        return None
    return [value, *(torch.load(io.BytesIO(b), map_location="cpu", weights_only=True) for b in gathered[1:])]


def share(ranks: Ranks, value):
    """Rank 0's ``value`` (JSON: None, numbers, strings, lists) on every rank."""
    if ranks.alone:
        return value
    texts = _all_gather_bytes(ranks, json.dumps(value).encode() if ranks.main else b"")
    return json.loads(texts[0])


def agree(ranks: Ranks, fn):
    """Run ``fn`` (local work, no collectives) on every rank, then agree: when it failed on any rank, every rank
    stops. Rank 0 reports the failure (its own, or the lowest failing rank's, named); the other ranks exit with
    its code silently, except one whose own failure is not a :class:`CycError` (a bug: its traceback shows).
    Also the barrier where the other ranks wait while rank 0 writes."""
    if ranks.alone:
        return fn()
    error: BaseException | None = None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every rank learns of it below, then it is raised again
        error, result = exc, None
    outcome = None if error is None else [getattr(error, "exit_code", 1), first_line(error, 200)]
    outcomes = [json.loads(text) for text in _all_gather_bytes(ranks, json.dumps(outcome).encode())]
    failed = [(rank, o) for rank, o in enumerate(outcomes) if o is not None]
    if not failed:
        return result
    if error is not None and (ranks.main or not isinstance(error, CycError)):
        raise error
    first_rank, (code, text) = failed[0]
    if ranks.main:
        others = [rank for rank, _ in failed[1:]]
        also = f" (rank {', '.join(map(str, others))} failed too)" if others else ""
        raise RankFailed(f"rank {first_rank}: {text}{also}", code)
    code = outcomes[0][0] if outcomes[0] is not None else code  # the code rank 0 exits with
    raise ReportedElsewhere(f"rank {ranks.rank}: stopped with rank {first_rank}: {text}", code)


def step_agreement(ranks: Ranks, losses: torch.Tensor, stop: bool) -> tuple[torch.Tensor, bool]:
    """One all-reduce per step: the losses averaged over the ranks (on the CPU), and whether any rank was asked
    to stop (Ctrl-C), so every rank stops after the same step. One process: its own, as they are."""
    if ranks.alone:
        return losses, stop
    import torch.distributed as dist

    packed = torch.cat([losses.detach().float().cpu(), torch.tensor([1.0 if stop else 0.0])])
    _collective(dist.all_reduce, packed)
    return packed[:-1] / ranks.world, bool(packed[-1] > 0)


def any_rank(ranks: Ranks, flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (one all-reduce)."""
    if ranks.alone:
        return flag
    import torch.distributed as dist

    packed = torch.tensor([1.0 if flag else 0.0])
    _collective(dist.all_reduce, packed)
    return bool(packed[0] > 0)


# --- the models: the same on every rank ------------------------------------------------------------------------


def join_training(ranks: Ranks, s) -> None:
    """Before the first step of ``cyc train``: :func:`join_models` with its four networks and two optimizers."""
    join_models(ranks, (s.G_AB, s.G_BA, s.D_A, s.D_B), (s.opt_G, s.opt_D))


def join_models(ranks: Ranks, modules, optimizers) -> None:
    """Before the first step: rank 0's weights on every rank (they are equal already: the same seed or the same
    checkpoint; this makes sure), then the gradient all-reduce on each optimizer's parameters."""
    if ranks.alone:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for module in modules:
            for tensor in (*module.parameters(), *module.buffers()):
                _collective(dist.broadcast, tensor.data, src=0)
    for opt in optimizers:
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        ranks.reducers.append(GradientAllReduce(params, ranks.world))


def differing_ranks(ranks: Ranks, modules) -> list[int]:
    """On rank 0, the ranks whose weights differ from its own (:func:`fingerprint`); elsewhere, and alone, []."""
    if ranks.alone:
        return []
    gathered = gather(ranks, {"fingerprint": fingerprint(modules)})
    if gathered is None:
        return []
    return [
        rank
        for rank, theirs in enumerate(gathered[1:], 1)
        if not torch.equal(theirs["fingerprint"], gathered[0]["fingerprint"])
    ]


def fingerprint(modules) -> torch.Tensor:
    """A bitwise digest of the modules' weights (per tensor, the sum of its bit patterns; on the CPU), to check
    that every rank holds the same model."""
    sums = []
    with torch.no_grad():
        for module in modules:
            for tensor in module.state_dict().values():
                bits = {4: torch.int32, 2: torch.int16, 8: torch.int64}.get(tensor.element_size(), torch.uint8)
                flat = tensor.detach().contiguous().reshape(-1)
                sums.append(
                    flat.view(bits).to(torch.int64).sum()
                    if flat.numel()
                    else torch.zeros((), dtype=torch.int64, device=flat.device)
                )
    return torch.stack([value.cpu() for value in sums]) if sums else torch.zeros(0, dtype=torch.int64)


class GradientAllReduce:
    """Averages the gradients of ``params`` over the ranks inside every backward pass (see the module docstring).

    The buckets are fixed (reverse parameter order, up to :data:`BUCKET_BYTES`, one device and dtype each) and are
    all-reduced in their order, so every rank issues the same collectives in the same order. A bucket is sent
    as soon as all of its parameters have their gradient and every bucket before it is sent; at the end of the
    backward pass the rest are sent with the gradients they have (a parameter that got none in this backward
    pass got none on any rank: the graph is the same everywhere), then all are awaited and written back.
    """

    def __init__(self, params: list[torch.nn.Parameter], world: int, bucket_bytes: int = BUCKET_BYTES):
        self.params, self.world = list(params), world
        self.buckets: list[list[int]] = []
        current: list[int] = []
        size, kind = 0, None
        for index in reversed(range(len(self.params))):
            p = self.params[index]
            nbytes = p.numel() * p.element_size()
            if current and ((p.device, p.dtype) != kind or size + nbytes > bucket_bytes):
                self.buckets.append(current)
                current, size = [], 0
            current.append(index)
            size, kind = size + nbytes, (p.device, p.dtype)
        if current:
            self.buckets.append(current)
        self.bucket_of = {index: b for b, bucket in enumerate(self.buckets) for index in bucket}
        self._reset()
        self.handles = [
            p.register_post_accumulate_grad_hook(functools.partial(self._ready, index))
            for index, p in enumerate(self.params)
        ]

    def _reset(self) -> None:
        self.ready: list[set[int]] = [set() for _ in self.buckets]
        self.sent = 0  # buckets sent, in order
        self.pending: list[tuple[list[int], torch.Tensor, object]] = []
        self.armed = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _ready(self, index: int, param: torch.Tensor) -> None:
        if not self.armed:  # the first gradient of this backward pass: wait for the rest at its end
            self.armed = True
            torch.autograd.Variable._execution_engine.queue_callback(self._finish)
        self.ready[self.bucket_of[index]].add(index)
        while self.sent < len(self.buckets) and len(self.ready[self.sent]) == len(self.buckets[self.sent]):
            self._send(self.sent)
            self.sent += 1

    def _send(self, bucket: int) -> None:
        import torch.distributed as dist

        indices = [i for i in self.buckets[bucket] if i in self.ready[bucket]]
        flat = torch.cat([self.params[i].grad.reshape(-1) for i in indices])
        work = _collective(dist.all_reduce, flat, async_op=True)
        self.pending.append((indices, flat, work))

    def _finish(self) -> None:
        try:
            for bucket in range(self.sent, len(self.buckets)):
                if self.ready[bucket]:
                    self._send(bucket)
            for indices, flat, work in self.pending:
                _collective(work.wait)
                flat.div_(self.world)
                offset = 0
                for i in indices:
                    grad = self.params[i].grad
                    grad.copy_(flat[offset : offset + grad.numel()].view(grad.shape))
                    offset += grad.numel()
        finally:
            self._reset()
