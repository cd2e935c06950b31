"""Training as several processes on one machine's CPUs: time per step and images per second, against one process.

    python benchmarks/train_distributed.py                      # 1 process vs 2 ranks (gloo), 128 px, full size
    python benchmarks/train_distributed.py --procs 2 4 --size 256 --steps 10
    python benchmarks/train_distributed.py --ngf 8 --n-blocks 2 --size 32 --steps 3   # a quick check that it runs

Each configuration runs in fresh processes started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), with the machine's cores shared evenly (OMP_NUM_THREADS = cores / processes; one
process gets them all). Every process runs exactly what ``cyc train`` runs per step: ``train_step`` on a state
from ``build_state`` (full-size networks unless told otherwise, batch 1 per rank, random images), with the
gradient all-reduce of :mod:`cyclegan_cli.training.distributed` hooked in and the per-step agreement (mean losses and the
stop flag) after it. Reported: the median seconds per step (the slowest rank's), images per second (the global
batch over that), the speed-up in images per second over one process, and the share of a step that the
all-reduce of all gradients alone takes (timed apart, same sizes). Nothing else may run meanwhile: the figures
are for this machine's cores, not for GPUs. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def worker(args) -> None:
    """One rank (or the one process): time ``args.steps`` steps after ``args.warmup``; rank 0 prints JSON."""
    import torch

    from cyclegan_cli.training import distributed
    from cyclegan_cli.training.config import TrainConfig
    from cyclegan_cli.training.state import build_state, train_step

    ranks = distributed.start(None)
    rank, world = ranks.rank, ranks.world
    config = TrainConfig(ngf=args.ngf, ndf=args.ngf, n_blocks=args.n_blocks, crop_size=args.size, load_size=args.size)
    state = build_state(config, "cpu", "fp32", rank)
    distributed.join_training(ranks, state)
    g = torch.Generator().manual_seed(rank)
    a = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    b = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    times = []
    for i in range(args.warmup + args.steps):
        started = time.perf_counter()
        losses = train_step(state, a, b)
        losses, _ = distributed.step_agreement(ranks, losses, False)
        losses.tolist()
        if i >= args.warmup:
            times.append(time.perf_counter() - started)
    allreduce_s = 0.0
    if not ranks.alone:  # the all-reduce of every gradient alone, as one step sends it (G's and D's buckets)
        import torch.distributed as dist

        for reducer in ranks.reducers:
            for bucket in reducer.buckets:
                flat = torch.zeros(sum(reducer.params[i].numel() for i in bucket))
                distributed.any_rank(ranks, False)  # start together
                started = time.perf_counter()
                for _ in range(args.steps):
                    dist.all_reduce(flat)
                allreduce_s += (time.perf_counter() - started) / args.steps
        slowest = torch.tensor([statistics.median(times), allreduce_s])
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        step_s, allreduce_s = slowest.tolist()
    else:
        step_s = statistics.median(times)
    if rank == 0:
        print(json.dumps({"world": world, "step_s": step_s, "allreduce_s": allreduce_s}), flush=True)
    distributed.finish(ranks)


def run(procs: int, args) -> dict:
    """``procs`` processes of :func:`worker`, the cores shared evenly; rank 0's JSON."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // procs)
    options = [f"--size={args.size}", f"--steps={args.steps}", f"--warmup={args.warmup}", f"--ngf={args.ngf}"]
    command = [sys.executable, __file__, "--worker", *options, f"--n-blocks={args.n_blocks}"]
    children = []
    for rank in range(procs):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if procs > 1:
            env.update(
                RANK=str(rank),
                WORLD_SIZE=str(procs),
                LOCAL_RANK=str(rank),
                LOCAL_WORLD_SIZE=str(procs),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
        else:
            env.pop("WORLD_SIZE", None)
        out = subprocess.PIPE if rank == 0 else subprocess.DEVNULL
        children.append(subprocess.Popen(command, env=env, stdout=out, text=True))
    try:
        output, _ = children[0].communicate(timeout=args.timeout)
        for child in children[1:]:
            child.wait(timeout=args.timeout)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if any(child.returncode != 0 for child in children):
        raise SystemExit(f"{procs} process(es) failed: exit codes {[c.returncode for c in children]}")
    result = json.loads(output.strip().splitlines()[-1])
    result["threads"] = threads
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[2], help="numbers of ranks to compare with one")
    parser.add_argument("--size", type=int, default=128, help="crop size (square), batch 1 per rank")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width (64: full size)")
    parser.add_argument("--n-blocks", type=int, default=9, help="generator blocks (9: full size)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a configuration is given up")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    cores = os.cpu_count() or 1
    print(
        f"torch {torch.__version__}, {cores} cores, gloo; ngf {args.ngf}, {args.n_blocks} blocks, {args.size} px, "
        f"batch 1 per rank; median of {args.steps} steps after {args.warmup} (the slowest rank's)"
    )
    print(
        f"{'processes':>9} {'threads each':>12} {'s/step':>8} {'images/s':>9} {'vs 1 process':>13} "
        f"{'all-reduce s':>13} {'of a step':>10}"
    )
    base = None
    for procs in [1, *[p for p in args.procs if p > 1]]:
        result = run(procs, args)
        images_s = procs / result["step_s"]
        base = base or images_s
        share = f"{result['allreduce_s'] / result['step_s']:>9.0%}" if procs > 1 else f"{'-':>10}"
        allreduce = f"{result['allreduce_s']:>13.3f}" if procs > 1 else f"{'-':>13}"
        print(
            f"{procs:>9} {result['threads']:>12} {result['step_s']:>8.3f} {images_s:>9.2f} "
            f"{images_s / base:>12.2f}x {allreduce} {share}",
            flush=True,
        )
    print(
        "images/s = global batch / s per step; 'vs 1 process' compares images/s with one process using every core. "
        "On CPUs the ranks share the same cores, so this shows the cost of the machinery, not the gain of GPUs."
    )


if __name__ == "__main__":
    main()
