"""``cyc run --shard I/N``: N processes, on as many machines, each translate a fixed share of the inputs.

Whatever scheduler starts the processes (a Slurm array, a Kubernetes indexed job, ``torchrun``, a shell loop),
process I of N takes the jobs :func:`assign` gives it. The split depends only on the inputs, their paths and
their work (frames x pixels, read from the headers), never on outputs already written, so a shard that is run
again with ``--skip-existing`` does the same share; together the N shards translate every input exactly once,
each writing the same output names a single run would.

``--shard auto`` reads the scheduler's variables (:data:`SCHEDULERS`): ``torchrun``'s ``RANK`` and
``WORLD_SIZE``; a Slurm array's ``SLURM_ARRAY_TASK_ID`` (less ``SLURM_ARRAY_TASK_MIN``) and
``SLURM_ARRAY_TASK_COUNT``; a Kubernetes indexed job's ``JOB_COMPLETION_INDEX`` with ``CYC_SHARD_COUNT`` (the
job's ``completions``, which Kubernetes does not pass to its pods).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cyclegan_cli.errors import UsageError


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int
    source: str = "--shard"  # where the numbers came from, for the log

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# scheduler name -> (index variable, count variable, variable whose value is subtracted from the index)
SCHEDULERS = {
    "torchrun": ("RANK", "WORLD_SIZE", None),
    "Slurm array": ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"),
    "Kubernetes indexed job": ("JOB_COMPLETION_INDEX", "CYC_SHARD_COUNT", None),
}


def parse_shard(text: str | None, environ: Mapping[str, str] = os.environ) -> Shard | None:
    """``--shard``: ``I/N`` (0-based), ``auto`` (a scheduler's variables), or None (no sharding)."""
    if text is None:
        return None
    if text == "auto":
        return from_environment(environ)
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise UsageError(f"--shard {text}: use I/N with 0 <= I < N (e.g. 0/4 .. 3/4), or auto")
    return Shard(index, count)


def from_environment(environ: Mapping[str, str] = os.environ) -> Shard:
    for name, (index_var, count_var, base_var) in SCHEDULERS.items():
        if index_var not in environ:
            continue
        if count_var not in environ:
            raise UsageError(f"--shard auto: {index_var} is set ({name}) but {count_var} is not; set it to the count")
        try:
            index = int(environ[index_var]) - int(environ.get(base_var, 0) if base_var else 0)
            count = int(environ[count_var])
        except ValueError:
            raise UsageError(f"--shard auto: {index_var} and {count_var} must be whole numbers") from None
        if not 0 <= index < count:
            raise UsageError(f"--shard auto: {index_var} gives shard {index}, outside 0..{count - 1}")
        return Shard(index, count, f"{name}: {index_var}, {count_var}")
    names = ", ".join(f"{i} + {c}" for i, c, _ in SCHEDULERS.values())
    raise UsageError(f"--shard auto: none of the schedulers' variables is set ({names}); give --shard I/N")


def scheduler_hint(environ: Mapping[str, str] = os.environ) -> str | None:
    """A note for a run without --shard started by a scheduler that shards: it translates everything."""
    for name, (index_var, count_var, _) in SCHEDULERS.items():
        if index_var in environ and environ.get(count_var, "") not in ("", "1"):
            return (
                f"note: {index_var} is set ({name}): this process translates every input; "
                "--shard auto would give it its share"
            )
    return None


def assign(work: list[float], count: int) -> list[int]:
    """The shard of each item: the largest first, each to the shard with the least work so far (the lowest
    index on a tie). Deterministic: ties between items are broken by their position."""
    totals = [0.0] * count
    shards = [0] * len(work)
    for position in sorted(range(len(work)), key=lambda i: (-work[i], i)):
        shard = min(range(count), key=lambda s: (totals[s], s))
        shards[position] = shard
        totals[shard] += work[position]
    return shards
