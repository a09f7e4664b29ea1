"""The engine's MLP step against the same process's dense matmul rate (issue 12, item 3).

    python bench/mlp_peak.py [--threads 0] [--repeats 3] [--steps 300]
    python bench/mlp_peak.py --compare OLD_ROOT [--rounds 3]
    python bench/mlp_peak.py --device cuda --grid big --loop-runs 20

`--grid big` is the 21 γ × 25 η grid of issue 12 item 5 (γ from 10^-2 to 10^3 and absolute
η from 10^-3 to 10^3, four per decade; the same network, batch and steps); `--loop-runs K`
also trains K runs spread over the grid one at a time the way the reference code does (one
nn.Module, a frozen copy for centering and torch.optim.SGD per run, `loss.item()` every step,
stop at divergence) and prints `big-grid speedup: X`, the loop's mean seconds per run times
the grid's runs over the engine's seconds (the loop is extrapolated from the K runs).

The grid is bench/engine.py's MLP grid: a bias-free ReLU MLP 784-128-128-10, batch 64,
γ ∈ {0.1, 1, 10, 100}, six absolute η from 10 down to 10^-1.5, one seed, float32, 300 steps,
trained by `ShardTrainer` into a temporary cache (commits included). FLOPs are counted as in
bench/engine.py (matmuls only: forward, weight and input gradients, one centering forward per
seed per step) over the member-steps the engine executed, which a subclass reads off the loss
windows `_run_steps` returns: a diverged member that keeps running until the next loss read
is counted, one that left the ensemble at once is not. Useful member-steps (up to and
including a divergent step) are the same for any engine and give the member-steps/s.

The dense rate is torch.mm of two 2048² float32 matrices (MKL on CPU), and oneDNN's where it
exists, measured before and after the grid in the same process; the engine's rate is printed
as a share of each. On a shared machine both drift together, so the share is the figure to
read, and each line shows how much CPU the process got (CPU seconds / wall seconds / threads).

--compare runs this script alternately under PYTHONPATH=OLD_ROOT and under this checkout,
`--rounds` times each, and prints both sides' best share side by side.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = """
name = "bench-mlp-peak"
seeds = [0]
[network]
width = 128
depth = 3
[data]
kind = "teacher_mlp"
input_dim = 784
hidden = 4
outputs = 10
[train]
batch_size = 64
steps = {steps}
dtype = "float32"
[gamma]
min = 0.1
max = 100
per_decade = 1
[eta]
min = 0.03162277660168379
max = 10
per_decade = 2
scale = "absolute"
"""

BIG_GRID = """
[gamma]
min = 0.01
max = 1000
per_decade = 4
[eta]
min = 0.001
max = 1000
per_decade = 4
scale = "absolute"
"""


def preset_text(steps: int, grid: str) -> str:
    """The bench preset at `steps`, on the small grid or the big one."""
    text = PRESET.format(steps=steps)
    return text[: text.index("[gamma]")] + BIG_GRID if grid == "big" else text


def dense_rates(
    clock: str, device: str = "cpu", size: int = 2048, repeats: int = 8
) -> tuple[float, float]:
    """(torch.mm, oneDNN) float32 GFLOP/s of a size² product by `clock` ('wall' or 'cpu'
    seconds per thread), best of three; oneDNN NaN if absent or not on the CPU."""
    import torch

    if device != "cpu":
        size = 8192
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    products = [lambda: a @ b]
    if device == "cpu" and torch.backends.mkldnn.is_available():
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    rates = []
    for product in products:
        product()
        best = math.inf
        for _ in range(3):
            start = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                product()
            sync(device)
            wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
            best = min(best, wall if clock == "wall" else cpu / torch.get_num_threads())
        rates.append(2.0 * size**3 * repeats / best / 1e9)
    return rates[0], rates[1] if len(rates) > 1 else math.nan


def sync(device: str) -> None:
    """Wait for queued GPU work."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_grid(
    steps: int, grid: str = "bench", device: str = "cpu", mode: str = "eager"
) -> tuple[float, float, int, int]:
    """Train the grid once: (wall seconds, CPU seconds, executed, useful member-steps)."""
    import torch

    from gamma_tui.cache import Cache
    from gamma_tui.config import expand, parse_preset
    from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions

    executed = 0

    class Counting(ShardTrainer):
        def _run_steps(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal executed
            losses, evals = super()._run_steps(*args, **kwargs)
            executed += losses.numel()
            return losses, evals

    text = preset_text(steps, grid)
    specs = expand(parse_preset(text))
    # eager: the options every version of the trainer has, so --compare can run old code
    modes = {"eager": {}, "compile": {"compile_step": True}, "cuda-graphs": {"cuda_graphs": True}}
    options = TrainerOptions(torch.device(device), **modes[mode])
    with tempfile.TemporaryDirectory(prefix="bench-mlp-peak-") as root:
        cache = Cache(root)
        cache.register_sweep("bench", text, {}, specs, steps)
        trainer = Counting(cache, "bench", options)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.train([s.run_id for s in specs])
        sync(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        useful = sum(
            steps if r.diverged_step is None else r.diverged_step + 1 for r in cache.runs()
        )
        cache.close()
    return wall, cpu, executed, useful


def measure(args: argparse.Namespace) -> None:
    """Best of `repeats` grid trainings against the dense rates around them."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    widths = (784, 128, 128, 10)
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    batch = 64
    member_step = 2.0 * batch * macs * 2 + 2.0 * batch * (macs - widths[0] * widths[1])
    centering = 2.0 * batch * macs
    train_grid(3, args.grid, args.device, args.mode)  # thread pools, allocator, kernels
    before, before_cpu = dense_rates("wall", args.device), dense_rates("cpu", args.device)
    best = None
    for _ in range(args.repeats):
        result = train_grid(args.steps, args.grid, args.device, args.mode)
        print(
            f"  run: {result[0]:.3f} s wall, CPU share {result[1] / result[0] / threads:.0%}, "
            f"executed {result[2]} member-steps, useful {result[3]}",
            flush=True,
        )
        best = result if best is None or result[0] < best[0] else best
    after, after_cpu = dense_rates("wall", args.device), dense_rates("cpu", args.device)
    assert best is not None
    wall, cpu, executed, useful = best
    flops = executed * member_step + args.steps * centering
    rate, cpu_rate = flops / wall / 1e9, flops / (cpu / threads) / 1e9
    mm, onednn = max(before[0], after[0]), max(before[1], after[1])
    mm_cpu = max(before_cpu[0], after_cpu[0])
    print(
        f"threads {threads}  dense torch.mm {before[0]:.1f}/{after[0]:.1f} GFLOP/s, "
        f"oneDNN {before[1]:.1f}/{after[1]:.1f} (before/after)"
    )
    print(
        f"engine: {wall:.3f} s, {useful / wall:.0f} member-steps/s, {rate:.1f} GFLOP/s over "
        f"{executed} executed member-steps ({executed - useful} past a divergence)"
    )
    print(f"share of dense torch.mm: {rate / mm:.1%}  share of oneDNN: {rate / onednn:.1%}")
    print(
        f"by CPU seconds per thread (fairer on a loaded machine with 1 thread): engine "
        f"{cpu_rate:.1f} GFLOP/s, torch.mm {mm_cpu:.1f}, share {cpu_rate / mm_cpu:.1%}"
    )
    if args.loop_runs:
        loop = loop_seconds_per_run(args.steps, args.grid, args.device, args.loop_runs)
        runs = len(expand_grid(args.steps, args.grid))
        print(
            f"loop: {loop:.3f} s per run (mean of {args.loop_runs} runs), {runs} runs: "
            f"{loop * runs:.1f} s extrapolated"
        )
        print(f"{args.grid}-grid TFLOP/s: {rate / 1e3:.3f}")
        print(f"{args.grid}-grid speedup: {loop * runs / wall:.1f}")


def expand_grid(steps: int, grid: str) -> list:  # type: ignore[type-arg]
    """The grid's run specs."""
    from gamma_tui.config import expand, parse_preset

    return expand(parse_preset(preset_text(steps, grid)))


def loop_seconds_per_run(steps: int, grid: str, device: str, count: int) -> float:
    """Mean wall seconds of `count` runs spread over the grid, each trained alone the way
    the reference code does (see the module docstring)."""
    import copy

    import torch
    from torch import nn

    from gamma_tui.engine.data import make_stream
    from gamma_tui.engine.parameterization import Architecture, init_weights, learning_rate

    specs = expand_grid(steps, grid)
    chosen = specs[:: max(1, len(specs) // count)][:count]
    spec = chosen[0]
    arch = Architecture.of(spec.network, spec.data.input_dim, spec.data.outputs)
    stream = make_stream(spec.data, spec.batch_size, "mse", torch.float32, torch.device(device))
    batches = [stream.batch(step) for step in range(steps)]

    class Scaled(nn.Module):
        def __init__(self, weight: torch.Tensor, multiplier: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(weight.float().to(device))
            self.multiplier = multiplier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x, self.weight) * self.multiplier

    total = 0.0
    for run in chosen:
        weights = init_weights(arch, run.seed)
        layers: list[nn.Module] = []
        for layer, weight in enumerate(weights):
            layers += [Scaled(weight, arch.multiplier(layer))] + [nn.ReLU()] * (
                layer < arch.depth - 1
            )
        model = nn.Sequential(*layers)
        frozen = copy.deepcopy(model).requires_grad_(False)
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate(run.eta, arch.width))
        sync(device)
        start = time.perf_counter()
        first = None
        for batch in batches:
            out = (model(batch.x) - frozen(batch.x)) / run.gamma
            loss = ((out - batch.target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()
            first = value if first is None else first
            if not math.isfinite(value) or value > run.divergence_factor * max(first, 1e-30):
                break
        sync(device)
        total += time.perf_counter() - start
    return total / len(chosen)


def compare(args: argparse.Namespace) -> None:
    """Alternate the old checkout and this one; print each side's best share side by side."""
    here = Path(__file__).resolve().parent.parent
    sides = {"old": Path(args.compare).resolve(), "new": here}
    found: dict[str, list[tuple[float, float, str]]] = {"old": [], "new": []}
    command = [sys.executable, str(Path(__file__).resolve()), "--repeats", "1"]
    command += ["--steps", str(args.steps), "--threads", str(args.threads)]
    for _ in range(args.rounds):
        for name, root in sides.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            share = re.search(r"share of dense torch.mm: ([\d.]+)%", out.stdout)
            cpu_share = re.search(r"share ([\d.]+)%$", out.stdout, re.MULTILINE)
            assert share and cpu_share, out.stdout + out.stderr
            engine_line = next(line for line in out.stdout.splitlines() if "engine:" in line)
            found[name].append((float(share[1]), float(cpu_share[1]), engine_line))
            print(
                f"{name}: {engine_line}  share {share[1]}% (wall), {cpu_share[1]}% (CPU)",
                flush=True,
            )
    for name in sides:
        wall_share = max(f[0] for f in found[name])
        cpu_best = max(f[1] for f in found[name])
        print(
            f"best {name}: {wall_share:.1f}% of the same run's torch.mm rate by wall clock, "
            f"{cpu_best:.1f}% by CPU seconds"
        )
    print(f"load after: {os.getloadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare", help="root of another checkout to measure side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda")
    parser.add_argument("--grid", default="bench", choices=["bench", "big"])
    parser.add_argument("--mode", default="eager", choices=["eager", "compile", "cuda-graphs"])
    parser.add_argument("--loop-runs", type=int, default=0, help="also time K per-run loops")
    args = parser.parse_args()
    if args.compare:
        compare(args)
    else:
        measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
