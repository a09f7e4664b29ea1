"""Batched ensemble engine versus a per-run loop, model by model, side by side in one process.

    python bench/engine.py [--model mlp|cnn|resnet18|vit|mlp-adam|all] [--device cpu|cuda|auto]
                           [--threads 0] [--repeats 3] [--quick]

Each grid is built from a preset TOML string through gamma_tui.config, so it is exactly what a
sweep would train (one seed, float32, MSE on one-hot targets for the image models):

- mlp: a bias-free ReLU MLP D=784, N=128, L=3, C=10, batch 64, γ ∈ {0.1, 1, 10, 100}, six
  absolute η from 10 down to 10^-1.5 in half decades, teacher_mlp data, 300 steps (SGD: the
  hand-written path of parameterization.py).
- mlp-adam: the same MLP and data under Adam (the general vmap + autograd path of
  functional.py), η from 10^-1 down to 10^-3.5, 100 steps.
- cnn: the reference CNN (convnet.py), bias-free, N=16 on CIFAR-shaped random images
  (3×32×32, N(0, 1) pixels, 10 balanced random classes), batch 64, γ ∈ {0.1, 1, 10, 100},
  η from 100 down to 10^-0.5, 40 steps.
- resnet18: the CIFAR ResNet-18 of functional.py at N=8 (stage widths 8, 16, 32, 64) on
  3×16×16 random images, batch 32, γ ∈ {0.1, 1, 10, 100}, η ∈ {1, 0.1, 0.01}, 10 steps.
- vit: the ViT of functional.py, N=32, 2 blocks of 2 heads, 4×4 patches (16 tokens) on
  3×16×16 random images, batch 32, γ ∈ {0.1, 1, 10, 100}, η from 10^0.5 down to 10^-2, 20 steps.
The ResNet-18 and ViT grids are small (width, image size, steps) so that both sides finish in
minutes on 2 cores; the images are written to a temporary .npz and read through data.kind = "npz".

- Engine: `ShardTrainer(...).train(run_ids)` on a fresh temporary Cache, real commits
  included. A subclass only adds timers around the step loop and the commits, which splits
  the total into setup, compute and commit.
- Loop: bench/reference_loop.py, one nn.Module and one torch.optim optimizer per run, as the
  reference code (Pehlevan-Group/Richness_Sweep) trains: same init (the engine's init for the
  seed), same batches (data.make_stream, drawn once like the reference's preloaded chunk and
  counted), same dtype, `loss.item()` every step, a diverged run stops at once.

FLOP count (analytic, from gamma_tui/costs.py's multiply-adds of one forward, M per sample;
element-wise work, normalization and softmax are ignored). With M_1 the first layer's share
and batch B, one training step of one member costs
    forward             2·B·M
    backward, weights   2·B·M
    backward, inputs    2·B·(M - M_1)      (no gradient into the data: first layer skipped)
plus the centering forward of the frozen init, 2·B·M, done once per seed per step by the
engine (members sharing a seed share it) and once per run per step by the loop. The loop
counts only the steps it ran; the engine counts the member-steps its loss windows computed (on
the CPU a diverged member leaves at its divergent step; on a GPU it runs to the next host
sync, every `sync_every` steps). Member-steps/s
counts useful steps only (up to and including the divergent step), identical on both sides,
so its ratio equals the speedup. The same-run peak is the best dense float32 2048³ matmul
rate (torch.mm, and oneDNN on CPU) measured just before and after the grid.

Shared machines drift (other jobs on the same cores), so the two sides alternate
`--repeats` times and each side's best wall time counts. Every repeat is printed with the
share of CPU time other processes took while it ran: a repeat under foreign load measures
neither side fairly. Each grid ends with X = best loop seconds / best engine seconds (engine
total including setup and commits): `speedup: X` for the MLP, `MODEL speedup: X` for the
others.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gamma_tui.cache import Cache
from gamma_tui.config import IMAGE_MODELS, RunSpec, expand, image_problem, parse_preset
from gamma_tui.costs import forward_macs
from gamma_tui.engine.data import make_stream
from gamma_tui.engine.functional import FunctionalArchitecture
from gamma_tui.engine.shard import DTYPES, model_family, resolve_device
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions

sys.path.insert(0, str(Path(__file__).parent))
from reference_loop import build_cnn, build_mlp, build_module, train_one  # noqa: E402

PRESET = """
name = "bench-engine-{name}"
seeds = [0]
[network]
{network}
[data]
{data}
[train]
batch_size = {batch}
steps = {steps}
optimizer = "{optimizer}"
dtype = "float32"
[gamma]
min = 0.1
max = 100
per_decade = 1
[eta]
min = {eta_min}
max = {eta_max}
per_decade = {eta_per_decade}
scale = "absolute"
"""

TEACHER = 'kind = "teacher_mlp"\ninput_dim = 784\nhidden = 4\noutputs = 10'
CLASSES = 10


@dataclass(frozen=True)
class Grid:
    """One model's benchmark grid: preset fields, image shape (None: teacher data), steps."""

    name: str
    network: str
    batch: int
    steps: int
    quick_steps: int
    eta: tuple[float, float, float]  # min, max, per decade
    image: tuple[int, int, int] | None = None
    optimizer: str = "sgd"

    def preset(self, steps: int, images: Path | None) -> str:
        """The grid's preset TOML at `steps` steps (images: the .npz of image grids)."""
        data = TEACHER if images is None else f"kind = \"npz\"\npath = '{images}'"
        eta_min, eta_max, per_decade = self.eta
        return PRESET.format(
            name=self.name,
            network=self.network,
            data=data,
            batch=self.batch,
            steps=steps,
            optimizer=self.optimizer,
            eta_min=eta_min,
            eta_max=eta_max,
            eta_per_decade=per_decade,
        )


GRIDS = {
    "mlp": Grid("mlp", "width = 128\ndepth = 3", 64, 300, 60, (10**-1.5, 10.0, 2)),
    "cnn": Grid("cnn", 'kind = "cnn"\nwidth = 16', 64, 40, 10, (10**-0.5, 100.0, 2), (3, 32, 32)),
    "resnet18": Grid(
        "resnet18", 'kind = "resnet18"\nwidth = 8', 32, 10, 4, (0.01, 1.0, 1), (3, 16, 16)
    ),
    "vit": Grid(
        "vit",
        'kind = "vit"\nwidth = 32\ndepth = 2\nheads = 2\npatch = 4',
        32,
        20,
        5,
        (0.01, 10**0.5, 2),
        (3, 16, 16),
    ),
    "mlp-adam": Grid(
        "mlp-adam", "width = 128\ndepth = 3", 64, 100, 20, (10**-3.5, 0.1, 2), optimizer="adam"
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default="all",
        choices=[*GRIDS, "all"],
        help="which grid to time (all: every one)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument(
        "--quick", action="store_true", help="a few steps per grid, one repeat: a smoke test"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="alternate engine and loop this many times; best time of each counts",
    )
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so wall clocks measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    device: torch.device, size: int = 2048, repeats: int = 10, onednn: bool = False
) -> float:
    """Dense float32 size×size matmul rate: torch.mm (MKL on CPU), or oneDNN when asked.

    On AMD CPUs MKL runs AVX2 kernels; oneDNN's AVX-512 kernels show the real fp32 ceiling.
    """
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    if onednn:

        def product() -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    else:

        def product() -> torch.Tensor:
            return a @ b

    for _ in range(2):
        product()
    best = math.inf
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            product()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best / 1e9


class LoadMeter:
    """Share of the machine's CPU time used by OTHER processes while a side ran (Linux only).

    Shared machines run other jobs; a repeat where they took a large share is not a fair
    measurement of either side, so it is printed next to every repeat.
    """

    def __enter__(self) -> LoadMeter:
        self.start = (_busy_jiffies(), os.times(), time.perf_counter())
        return self

    def __exit__(self, *_: object) -> None:
        busy0, own0, wall0 = self.start
        busy1, own1, wall1 = _busy_jiffies(), os.times(), time.perf_counter()
        own = (own1.user + own1.system) - (own0.user + own0.system)
        capacity = (wall1 - wall0) * (os.cpu_count() or 1)
        self.foreign = max(0.0, (busy1 - busy0) / os.sysconf("SC_CLK_TCK") - own) / capacity


def _busy_jiffies() -> float:
    """Non-idle CPU jiffies of the whole machine (NaN where /proc/stat does not exist)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return math.nan
    return float(sum(fields[:8]) - fields[3] - fields[4])


# ---- engine side -------------------------------------------------------------------------


class TimedTrainer(ShardTrainer):
    """ShardTrainer with timers around its step loop and its cache commits (nothing else)."""

    compute_seconds = 0.0
    commit_seconds = 0.0
    executed_steps = 0
    """Member-steps computed: the loss windows' sizes (a diverged member leaves the ensemble
    at its divergent step on the CPU, at the next loss read elsewhere)."""

    def _run_steps(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            result = super()._run_steps(*args, **kwargs)
            self.executed_steps += result[0].numel()
            return result
        finally:
            self.compute_seconds += time.perf_counter() - start

    def _record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()  # the host copy here is the device sync: count it as compute
        try:
            return super()._record(*args, **kwargs)
        finally:
            self.compute_seconds += time.perf_counter() - start

    def _commit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super()._commit(*args, **kwargs)
        finally:
            self.commit_seconds += time.perf_counter() - start


@dataclass
class SideResult:
    """One side's wall time and per-run outcome (keyed by run id)."""

    seconds: float
    final_loss: dict[str, float]
    diverged_step: dict[str, int | None]


def run_engine(
    preset_toml: str, specs: list[RunSpec], steps: int, device: torch.device
) -> tuple[SideResult, TimedTrainer]:
    """Register the grid in a fresh temporary cache and train it as one shard."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as root:
        cache = Cache(root)
        cache.register_sweep("bench", preset_toml, {}, specs, steps)
        run_ids = [spec.run_id for spec in specs]
        trainer = TimedTrainer(cache, "bench:engine", TrainerOptions(device))
        synchronize(device)
        start = time.perf_counter()
        trained = trainer.train(run_ids)
        synchronize(device)
        seconds = time.perf_counter() - start
        assert trained == len(specs), f"engine trained {trained} of {len(specs)} runs"
        infos = {info.run_id: info for info in cache.runs(run_ids=run_ids)}
        cache.close()
    return SideResult(
        seconds,
        {rid: float(info.last_loss) for rid, info in infos.items() if info.last_loss is not None},
        {rid: info.diverged_step for rid, info in infos.items()},
    ), trainer


# ---- loop side -----------------------------------------------------------------------------


def reference_builder(
    spec: RunSpec, dtype: torch.dtype, device: torch.device
) -> tuple[Callable[[int], nn.Module], int, tuple[float, float]]:
    """The grid's reference network as seed -> module with the engine's init, its N, and the
    (forward, first-layer) multiply-adds per sample."""
    stream = make_stream(spec.data, 1, spec.loss, dtype, torch.device("cpu"), flatten=False)
    family = model_family(spec.network, stream, "sgd")
    kind = spec.network.kind
    shape = tuple(stream.input_shape) if kind in IMAGE_MODELS else (stream.input_dim,)
    outputs = stream.outputs
    macs = forward_macs(spec.network, shape, outputs), first_layer_macs(spec, shape)
    if kind == "cnn":
        return lambda seed: build_cnn(family, seed, dtype, device), family.width, macs
    if kind in IMAGE_MODELS:
        assert isinstance(family, FunctionalArchitecture)
        make = family.build
        return lambda seed: build_module(family, make, seed, dtype, device), family.width, macs
    return lambda seed: build_mlp(family, seed, dtype, device), family.width, macs


def first_layer_macs(spec: RunSpec, shape: tuple[int, ...]) -> float:
    """Multiply-adds of the first layer per sample (no input gradient is computed for it)."""
    kind, n = spec.network.kind, spec.network.width
    pixels = math.prod(shape)  # the stem, the patch embedding and the MLP's first layer
    if kind == "cnn":
        channels, height, width = shape
        return 9.0 * channels * n * (height - 2) * (width - 2)
    return (9.0 if kind == "resnet18" else 1.0) * pixels * n


def run_loop(specs: list[RunSpec], steps: int, device: torch.device) -> SideResult:
    """Every run of the grid, one after another."""
    spec = specs[0]
    dtype = DTYPES[spec.dtype]
    build, width, _ = reference_builder(spec, dtype, device)
    synchronize(device)
    start = time.perf_counter()
    flatten = spec.network.kind not in IMAGE_MODELS  # as the engine: images stay (B, C, H, W)
    stream = make_stream(spec.data, spec.batch_size, spec.loss, dtype, device, flatten)
    batches = [(b.x, b.target) for b in map(stream.batch, range(steps))]
    final, diverged = {}, {}
    for spec in specs:
        final[spec.run_id], diverged[spec.run_id] = train_one(spec, build, width, batches)
    synchronize(device)
    return SideResult(time.perf_counter() - start, final, diverged)


# ---- accounting ----------------------------------------------------------------------------


def step_flops(macs: tuple[float, float], batch: int) -> tuple[float, float]:
    """(training step of one member, one centering forward) in FLOPs; see the module doc."""
    total, first = macs
    forward = 2.0 * batch * total
    return forward + forward + 2.0 * batch * (total - first), forward


def useful_steps(result: SideResult, steps: int) -> dict[str, int]:
    """Steps each run needed: all of them, or up to and including the divergent one."""
    return {rid: steps if s is None else s + 1 for rid, s in result.diverged_step.items()}


AGREE = 1e-3
"""Relative final-loss difference under which a run counts as reproduced. Rounding (ensemble
and per-run kernels sum in different orders) leaves ~1e-7 on most runs, but runs at the edge
of stability amplify it over the steps, so a few percent there is chaos, not a bug."""


def cross_check(engine: SideResult, loop: SideResult) -> tuple[int, float, float, int, int]:
    """(runs whose divergence disagrees, max and median relative final-loss difference, runs
    within AGREE, runs compared)."""
    disagree = sum(
        (engine.diverged_step[r] is None) != (loop.diverged_step[r] is None)
        for r in engine.diverged_step
    )
    rel = [
        abs(engine.final_loss[r] - loop.final_loss[r]) / max(abs(loop.final_loss[r]), 1e-30)
        for r in engine.diverged_step
        if engine.diverged_step[r] is None and loop.diverged_step[r] is None
    ]
    median = float(np.median(rel)) if rel else math.nan
    return disagree, max(rel, default=float("nan")), median, sum(r <= AGREE for r in rel), len(rel)


def warm_up(preset_toml: str, device: torch.device) -> None:
    """A few steps of each side so one-off costs (thread pools, allocator) hit neither timing;
    `preset_toml` is the grid's preset at 3 steps."""
    specs = expand(parse_preset(preset_toml))[:2]
    run_engine(preset_toml, specs, 3, device)
    run_loop(specs, 3, device)


def main(argv: list[str] | None = None) -> int:
    """Train the chosen grids both ways and print the rates; each grid ends with its speedup."""
    args = parse_args(argv)
    repeats = 1 if args.quick else max(1, args.repeats)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    print(
        f"torch {torch.__version__}  device {device}  threads {torch.get_num_threads()}  "
        f"python {sys.version.split()[0]}"
    )
    names = list(GRIDS) if args.model == "all" else [args.model]
    with tempfile.TemporaryDirectory(prefix="bench-engine-images-") as root:
        for name in names:
            bench_grid(GRIDS[name], Path(root), args.quick, repeats, device)
    return 0


def write_images(path: Path, shape: tuple[int, int, int], samples: int) -> Path:
    """Random images with balanced random labels, as an uncompressed .npz.

    N(0, 1) pixels stand in for normalized CIFAR (the npz reader keeps float32 X as is); every
    class occurs, since the reader counts classes from the largest label.
    """
    rng = np.random.default_rng(0)
    images = rng.standard_normal((samples, *shape), dtype=np.float32)
    np.savez(path, X=images, y=rng.permutation(np.arange(samples) % CLASSES))
    return path


def bench_grid(grid: Grid, root: Path, quick: bool, repeats: int, device: torch.device) -> None:
    """One grid: its description, the repeats, the rates and its speedup line."""
    steps = grid.quick_steps if quick else grid.steps
    images = None
    if grid.image is not None:
        shape = "x".join(map(str, grid.image))
        images = write_images(root / f"{grid.name}-{shape}.npz", grid.image, steps * grid.batch)
    preset_toml, warm_toml = grid.preset(steps, images), grid.preset(3, images)
    preset = parse_preset(preset_toml, source="bench/engine.py")
    if grid.image is not None:
        problem = image_problem(preset.network, grid.image)
        assert not problem, problem
    specs = expand(preset)
    _, _, macs = reference_builder(specs[0], DTYPES[preset.train.dtype], device)
    net = preset.network
    network = f"{net.kind} N={net.width} depth={net.depth} bias={net.bias}"
    if net.kind == "vit":
        network += f" heads={net.heads} patch={net.patch}"
    data = f"random {'x'.join(map(str, grid.image))} images" if grid.image else "teacher_mlp"
    print(
        f"\ngrid {grid.name}: network {network}  {data}  B={preset.train.batch_size} "
        f"{preset.train.dtype} {preset.train.optimizer}  gamma {preset.gamma.values()}  "
        f"eta {sorted({s.eta for s in specs}, reverse=True)}  seeds {preset.seeds}  "
        f"steps {steps}  runs {len(specs)}  {macs[0] / 1e6:.3f} M multiply-adds per sample"
    )
    flops = step_flops(macs, preset.train.batch_size)
    label = "" if grid.name == "mlp" else f"{grid.name} "
    compare(preset_toml, warm_toml, specs, steps, flops, repeats, device, label)


def compare(
    preset_toml: str,
    warm_toml: str,
    specs: list[RunSpec],
    steps: int,
    flops: tuple[float, float],
    repeats: int,
    device: torch.device,
    label: str,
) -> None:
    """Alternate engine and loop `repeats` times on one grid, then report the best of each and
    the speedup (prefixed by `label`)."""
    peak_before = dense_peak(device)
    warm_up(warm_toml, device)
    engines, trainers, loops = [], [], []
    for repeat in range(repeats):
        with LoadMeter() as engine_load:
            engine, trainer = run_engine(preset_toml, specs, steps, device)
        with LoadMeter() as loop_load:
            loop = run_loop(specs, steps, device)
        engines.append(engine)
        trainers.append(trainer)
        loops.append(loop)
        print(
            f"repeat {repeat}: engine {engine.seconds:.3f} s, loop {loop.seconds:.3f} s, "
            f"ratio {loop.seconds / engine.seconds:.2f}  (other processes' CPU share: "
            f"{engine_load.foreign:.0%} during engine, {loop_load.foreign:.0%} during loop)"
        )
    peak_after = dense_peak(device)
    drift = abs(peak_after / peak_before - 1) > 0.2
    print(
        f"dense fp32 matmul peak (2048^3, best of torch.mm and oneDNN): {peak_before:.1f} "
        f"GFLOP/s before, {peak_after:.1f} after"
        + ("  (NOISY MACHINE: rates drifted)" if drift else "")
    )
    best = min(range(repeats), key=lambda i: engines[i].seconds)
    engine, trainer = engines[best], trainers[best]
    loop = min(loops, key=lambda r: r.seconds)
    seeds = len({spec.seed for spec in specs})
    rates = report(flops, seeds, steps, engine, trainer, loop)
    peak = max(peak_before, peak_after)
    print(
        f"{label or 'mlp '}engine at {rates[0] / peak:.0%} of the same-run dense matmul peak "
        f"({rates[1] / peak:.0%} in compute), loop at {rates[2] / peak:.0%}"
    )
    print(
        f"{label}speedup excluding engine setup: "
        f"{loop.seconds / (trainer.compute_seconds + trainer.commit_seconds):.2f}"
    )
    print(f"{label}speedup: {loop.seconds / engine.seconds:.2f}")


def dense_peak(device: torch.device) -> float:
    """The best dense float32 matmul rate now: torch.mm, and on CPU also oneDNN's GEMM (which
    runs AVX-512 kernels where MKL, on AMD CPUs, does not)."""
    rate = matmul_gflops(device)
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        rate = max(rate, matmul_gflops(device, onednn=True))
    return rate


def report(
    flops: tuple[float, float],
    seeds: int,
    steps: int,
    engine: SideResult,
    trainer: TimedTrainer,
    loop: SideResult,
) -> tuple[float, float, float]:
    """Print each side's rates, the divergence counts and the final-loss cross-check;
    `flops` is step_flops of the grid's model. Returns the engine's GFLOP/s (total, in
    compute) and the loop's."""
    train_flops, center_flops = flops
    useful = sum(useful_steps(loop, steps).values())
    executed = trainer.executed_steps
    engine_flops = executed * train_flops + steps * seeds * center_flops
    loop_flops = useful * (train_flops + center_flops)
    setup = engine.seconds - trainer.compute_seconds - trainer.commit_seconds
    print(
        f"engine: {engine.seconds:7.3f} s  (compute {trainer.compute_seconds:.3f} s, "
        f"commits {trainer.commit_seconds:.3f} s, setup {setup:.3f} s)  "
        f"{useful / engine.seconds:8.0f} member-steps/s  "
        f"{engine_flops / engine.seconds / 1e9:6.1f} GFLOP/s "
        f"({engine_flops / trainer.compute_seconds / 1e9:.1f} in compute)  "
        f"executed {executed} member-steps"
    )
    print(
        f"loop:   {loop.seconds:7.3f} s  {useful / loop.seconds:8.0f} member-steps/s  "
        f"{loop_flops / loop.seconds / 1e9:6.1f} GFLOP/s  useful {useful} member-steps"
    )
    diverged_engine = sum(s is not None for s in engine.diverged_step.values())
    diverged_loop = sum(s is not None for s in loop.diverged_step.values())
    disagree, rel_max, rel_median, close, compared = cross_check(engine, loop)
    same_step = sum(engine.diverged_step[r] == loop.diverged_step[r] for r in loop.diverged_step)
    print(
        f"diverged: engine {diverged_engine}, loop {diverged_loop}  (status disagrees on "
        f"{disagree} runs; same divergent step on {same_step}/{len(loop.diverged_step)})"
    )
    print(
        f"final-loss cross-check over non-diverged runs: max rel diff {rel_max:.2e}, "
        f"median {rel_median:.2e}, within {AGREE:.0e} on {close}/{compared}"
    )
    return (
        engine_flops / engine.seconds / 1e9,
        engine_flops / trainer.compute_seconds / 1e9,
        loop_flops / loop.seconds / 1e9,
    )


if __name__ == "__main__":
    sys.exit(main())
