"""Worker process: train the given shards into the cache, then exit.

    python -m gamma_tui.engine --cache runs --shard RUN_ID,RUN_ID,... [--shard ...]

Exit status 0 when every shard was trained (or already held elsewhere), 1 when a shard
failed (its runs are marked failed with the error), 130 when stopped by a signal (runs
keep their checkpoints and go back to the queue).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import traceback
import uuid

import torch

from gamma_tui.cache import Cache
from gamma_tui.engine.shard import resolve_device
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions

COST_FILE = "logs/cost-{pid}.json"
"""Where in the cache a worker leaves the wall time it trained and the part the [diagnostics]
took ({"total": s, "diagnostics": s}), for the `run` that started it (backends.local.WorkerPool)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the worker."""
    parser = argparse.ArgumentParser(prog="python -m gamma_tui.engine", description=__doc__)
    parser.add_argument("--cache", required=True, help="cache directory")
    parser.add_argument("--shard", action="append", default=[], help="comma-separated run ids")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="steps per checkpoint")
    parser.add_argument("--commit-seconds", type=float, default=2.0, help="curve write cadence")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the step (eager on failure)"
    )
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="replay the step as CUDA graphs (CUDA only)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train every shard named on the command line."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    options = TrainerOptions(
        resolve_device(args.device),
        args.checkpoint_every,
        args.commit_seconds,
        compile_step=args.compile,
        cuda_graphs=args.cuda_graphs,
    )
    cache = Cache(args.cache)
    trainer = ShardTrainer(cache, owner, options)
    cost = cache.root / COST_FILE.format(pid=os.getpid())
    cost.unlink(missing_ok=True)  # an earlier process with this pid may have left one

    def stop(signum: int, _frame: object) -> None:
        trainer.stop_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    try:
        for shard in args.shard:
            if trainer.stop_requested:
                break
            trainer.train([run_id for run_id in shard.split(",") if run_id])
    except Exception as error:  # a failed shard is reported in the cache, not lost
        traceback.print_exc()
        cache.fail(owner, f"{type(error).__name__}: {error}")
        status = 1
    finally:
        cache.release(owner)
        cache.close()
        _write_cost(cost, trainer.seconds)
    return 130 if trainer.stop_requested and status == 0 else status


def _write_cost(path: os.PathLike[str], seconds: dict[str, float]) -> None:
    """Write the timings through a temporary name (the reader never sees half a file); a
    cache without a logs folder (a job cache) gets none."""
    if not os.path.isdir(os.path.dirname(path)):
        return
    temporary = f"{os.fspath(path)}.partial"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(seconds, handle)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
