"""Batched ensemble engine versus the reference per-run loop, on one grid in one process.

    python bench/engine.py [--model mlp|cnn|all] [--device cpu|cuda|auto] [--steps 300]
                           [--cnn-steps 40] [--cnn-width 16] [--threads 0] [--repeats 3]
                           [--input-dim 784] [--quick]

Two grids, each timed on its own (`--model all`, the default, runs the MLP, then the CNN):

- MLP: a bias-free ReLU MLP D=784, N=128, L=3 (C=10 outputs, an MNIST-sized readout),
  batch 64, γ ∈ {0.1, 1, 10, 100}, six absolute η from 10 down to 10^-1.5 in half decades,
  one seed, float32, teacher_mlp data (4 hidden units, 10 outputs).
- CNN: the reference CNN (engine/convnet.py: 3×3 convs of N and 2N channels divided by
  sqrt(C_in), ReLU, 2×2 average pool, linear 8N, μP readout 1/(8N)), bias-free, N=16, on
  CIFAR-shaped random images (3×32×32, N(0, 1) pixels, 10 balanced random classes, MSE on
  one-hot targets) written to a temporary .npz and read through data.kind = "npz", batch 64,
  γ ∈ {0.1, 1, 10, 100}, six absolute η from 100 down to 10^-0.5 in half decades (a decade
  above the MLP's, so that the CNN grid too holds diverged, edge-of-stability and smoothly
  trained runs), one seed, float32, 40 steps.

Each grid is built from a preset TOML string through gamma_tui.config, so it is exactly what
a sweep would train.

- Engine: `ShardTrainer(...).train(run_ids)` on a fresh temporary Cache, real commits
  included. A subclass only adds timers around the step loop and the commits, which splits
  the total into setup, compute and commit.
- Loop: what Pehlevan-Group/Richness_Sweep does, one run at a time: an nn.Module (MLP:
  StdLinear = Linear/sqrt(fan_in), FinalLinear = Linear/fan_in; CNN: StdConv2d =
  Conv2d/sqrt(C_in), then the same linear layers; no bias), a frozen deepcopy for centering
  (the reference's CenteredModel), f = (model(x) - model0(x))/γ, MSE mean,
  torch.optim.SGD(lr=N·η) on all parameters, zero_grad/backward/step and `loss.item()` every
  step; a run stops at its first NaN/inf loss or loss > divergence_factor × initial. Same
  init (the engine's init for the seed), same batches (data.make_stream), same dtype. The
  batches are drawn once, like the reference's preloaded data chunk, and that time is counted.

FLOP count (analytic, matmuls and convolutions only; ReLU, pooling and other elementwise work
are ignored). For one member with M multiply-adds per sample in its forward (the MLP:
M = P = Σ n_in·n_out weights; the CNN: each layer's weights times its output positions) and
batch B, one training step costs
    forward             2·B·M
    backward, weights   2·B·M
    backward, inputs    2·B·(M - M_1)      (no gradient into the data: first layer skipped)
plus the centering forward of the frozen init, 2·B·M, done once per seed per step by the
engine (members sharing a seed share it) and once per run per step by the loop. The loop
counts only the steps it ran (a diverged run stops at once); the engine counts the steps
it executed, which include those a diverged member runs until the next host sync (every
`sync_every` steps). Member-steps/s counts useful steps only (up to and including the
divergent step), identical on both sides, so its ratio equals the speedup.

Shared machines drift (other jobs on the same cores), so the two sides alternate
`--repeats` times and each side's best wall time counts. Every repeat is printed with the
share of CPU time other processes took while it ran, and the dense matmul rate is measured
before and after each grid: a repeat under foreign load measures neither side fairly (the
loop, with its many small parallel regions, suffers more and the ratio inflates).
Each grid ends with its speedup, X = best loop seconds / best engine seconds (engine total
including setup and commits): `speedup: X` for the MLP, `cnn speedup: X` for the CNN.
"""

from __future__ import annotations

import argparse
import copy
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
import torch.nn.functional as F
from torch import nn

from gamma_tui.cache import Cache
from gamma_tui.config import IMAGE_MODELS, NetworkConfig, RunSpec, expand, parse_preset
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.data import make_stream
from gamma_tui.engine.parameterization import Architecture, init_weights, learning_rate
from gamma_tui.engine.trainer import DTYPES, ShardTrainer, TrainerOptions, resolve_device

PRESET_TOML = """
name = "bench-engine"
seeds = [0]
[network]
width = 128
depth = 3
[data]
kind = "teacher_mlp"
input_dim = {input_dim}
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

IMAGE_SHAPE, CLASSES, CNN_BATCH = (3, 32, 32), 10, 64
"""The CNN grid's CIFAR-shaped random images, their classes and the batch size."""

CNN_PRESET_TOML = """
name = "bench-engine-cnn"
seeds = [0]
[network]
kind = "cnn"
width = {width}
[data]
kind = "npz"
path = '{path}'
[train]
batch_size = {batch}
steps = {steps}
dtype = "float32"
[gamma]
min = 0.1
max = 100
per_decade = 1
[eta]
min = 0.31622776601683794
max = 100
per_decade = 2
scale = "absolute"
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default="all",
        choices=["mlp", "cnn", "all"],
        help="which grid to time (all: the MLP, then the CNN)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--steps", type=int, default=300, help="MLP training steps per run")
    parser.add_argument("--cnn-steps", type=int, default=40, help="CNN training steps per run")
    parser.add_argument("--cnn-width", type=int, default=16, help="CNN width N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument(
        "--quick", action="store_true", help="60 MLP and 10 CNN steps, one repeat: a smoke test"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="alternate engine and loop this many times; best time of each counts",
    )
    parser.add_argument(
        "--input-dim",
        type=int,
        default=784,
        help="D (784 is the benchmark; 32 shows the overhead-bound regime)",
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


def onednn_gflops(device: torch.device) -> str:
    """oneDNN's dense rate as text, or why it is not available."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return "n/a"
    try:
        return f"{matmul_gflops(device, onednn=True):.1f}"
    except (RuntimeError, AttributeError):
        return "n/a"


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

    def _run_steps(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super()._run_steps(*args, **kwargs)
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


# ---- loop side: the reference code's structure -------------------------------------------


class StdLinear(nn.Module):
    """Linear layer, N(0,1) weights, output divided by sqrt(fan_in) (reference StdLinear)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) / math.sqrt(x.shape[-1])


class FinalLinear(nn.Module):
    """μP readout: output divided by fan_in (reference FinalLinear)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) / x.shape[-1]


class StdConv2d(nn.Module):
    """3×3 convolution, N(0,1) weights, output divided by sqrt(C_in) (reference StdConv2d)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) / math.sqrt(x.shape[-3])


class ReferenceCNN(nn.Module):
    """The reference CNN (vision_tasks/models.py) without its 1/γ, which train_one applies."""

    def __init__(self, arch: ConvArchitecture) -> None:
        super().__init__()
        channels, n = arch.input_shape[0], arch.width
        height, width = arch.feature_shape
        self.conv1, self.conv2 = StdConv2d(channels, n), StdConv2d(n, 2 * n)
        self.fc1 = StdLinear(2 * n * height * width, 8 * n)
        self.fc2 = FinalLinear(8 * n, arch.outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def build_mlp(arch: Architecture, seed: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The reference MLP with the engine's initial weights for `seed`."""
    widths = arch.widths
    layers: list[nn.Module] = []
    for i in range(arch.depth - 1):
        layers += [StdLinear(widths[i], widths[i + 1]), nn.ReLU()]
    layers.append(FinalLinear(widths[-2], widths[-1]))
    model = nn.Sequential(*layers).to(device=device, dtype=dtype)
    linears = [m.linear for m in model if isinstance(m, (StdLinear, FinalLinear))]
    with torch.no_grad():
        for linear, weight in zip(linears, init_weights(arch, seed), strict=True):
            linear.weight.copy_(weight.to(dtype))
    return model


def build_cnn(
    arch: ConvArchitecture, seed: int, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """The reference CNN with the engine's initial weights for `seed` (bias-free: a biased
    architecture has more initial tensors than layers, and the strict zip refuses it)."""
    model = ReferenceCNN(arch).to(device=device, dtype=dtype)
    layers: list[nn.Conv2d | nn.Linear] = [
        model.conv1.conv,
        model.conv2.conv,
        model.fc1.linear,
        model.fc2.linear,
    ]
    with torch.no_grad():
        for layer, weight in zip(layers, arch.init(seed), strict=True):
            layer.weight.copy_(weight.to(dtype))
    return model


def cnn_arch(network: NetworkConfig) -> ConvArchitecture:
    """The engine's CNN on the bench images (what trainer.model_family builds for them)."""
    return ConvArchitecture(IMAGE_SHAPE, network.width, CLASSES, network.bias)


def reference_builder(
    spec: RunSpec, dtype: torch.dtype, device: torch.device
) -> tuple[Callable[[int], nn.Module], int]:
    """The grid's reference network as seed -> module with the engine's init, and its N."""
    if spec.network.kind == "cnn":
        cnn = cnn_arch(spec.network)
        return lambda seed: build_cnn(cnn, seed, dtype, device), cnn.width
    arch = Architecture.of(spec.network, spec.data.input_dim, spec.data.outputs)
    return lambda seed: build_mlp(arch, seed, dtype, device), arch.width


def train_one(
    spec: RunSpec,
    build: Callable[[int], nn.Module],
    width: int,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[float, int | None, int]:
    """One run as the reference trains it; returns (last loss, diverged step, steps run)."""
    torch.manual_seed(spec.seed)
    model = build(spec.seed)
    model0 = copy.deepcopy(model)
    for param in model0.parameters():
        param.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate(spec.eta, width))
    gamma, init_loss, value = spec.gamma, None, math.nan
    for step, (x, target) in enumerate(batches):
        optimizer.zero_grad()
        f = (model(x) - model0(x)) / gamma
        loss = F.mse_loss(f, target)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if init_loss is None:
            init_loss = value
        if not math.isfinite(value) or value > spec.divergence_factor * max(init_loss, 1e-30):
            return value, step, step + 1
    return value, None, len(batches)


def run_loop(specs: list[RunSpec], steps: int, device: torch.device) -> SideResult:
    """Every run of the grid, one after another."""
    spec = specs[0]
    dtype = DTYPES[spec.dtype]
    build, width = reference_builder(spec, dtype, device)
    synchronize(device)
    start = time.perf_counter()
    flatten = spec.network.kind not in IMAGE_MODELS  # as the engine: images stay (B, C, H, W)
    stream = make_stream(spec.data, spec.batch_size, spec.loss, dtype, device, flatten)
    batches = [(b.x, b.target) for b in map(stream.batch, range(steps))]
    final, diverged = {}, {}
    for spec in specs:
        final[spec.run_id], diverged[spec.run_id], _ = train_one(spec, build, width, batches)
    synchronize(device)
    return SideResult(time.perf_counter() - start, final, diverged)


# ---- accounting ----------------------------------------------------------------------------


def mlp_macs(arch: Architecture) -> tuple[int, int]:
    """(multiply-adds of one sample's forward, those of its first layer): the MLP's weights."""
    weights = sum(a * b for a, b in zip(arch.widths[:-1], arch.widths[1:], strict=True))
    return weights, arch.widths[0] * arch.widths[1]


def cnn_macs(arch: ConvArchitecture) -> tuple[int, int]:
    """(multiply-adds of one sample's forward, those of its first layer) of the CNN: each
    layer's weights times the positions it is applied at (valid 3×3 convolutions, 2×2 pools)."""
    channels, height, width = arch.input_shape
    n, (rows, cols) = arch.width, arch.feature_shape
    first = n * channels * 9 * (height - 2) * (width - 2)
    second = 2 * n * n * 9 * ((height - 2) // 2 - 2) * ((width - 2) // 2 - 2)
    return first + second + 8 * n * 2 * n * rows * cols + arch.outputs * 8 * n, first


def step_flops(macs: tuple[int, int], batch: int) -> tuple[float, float]:
    """(training step of one member, one centering forward) in FLOPs; see the module doc."""
    total, first = macs
    forward = 2.0 * batch * total
    return forward + forward + 2.0 * batch * (total - first), forward


def useful_steps(result: SideResult, steps: int) -> dict[str, int]:
    """Steps each run needed: all of them, or up to and including the divergent one."""
    return {rid: steps if s is None else s + 1 for rid, s in result.diverged_step.items()}


def engine_executed_steps(result: SideResult, steps: int, sync_every: int) -> int:
    """Member-steps the engine computed: a diverged member runs to the next host sync."""
    total = 0
    for s in result.diverged_step.values():
        total += steps if s is None else min(steps, sync_every * math.ceil((s + 1) / sync_every))
    return total


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
    if args.model in ("mlp", "all"):
        bench_mlp(args, repeats, device)
    if args.model in ("cnn", "all"):
        bench_cnn(args, repeats, device)
    return 0


def bench_mlp(args: argparse.Namespace, repeats: int, device: torch.device) -> None:
    """The MLP grid: its description, the repeats, the rates and `speedup: X`."""
    steps = 60 if args.quick else args.steps
    preset_toml = PRESET_TOML.format(steps=steps, input_dim=args.input_dim)
    preset = parse_preset(preset_toml, source="bench/engine.py")
    specs = expand(preset)
    arch = Architecture.of(preset.network, preset.data.input_dim, preset.data.outputs)
    print(
        f"grid: MLP widths {arch.widths} B={preset.train.batch_size} {preset.train.dtype}  "
        f"gamma {preset.gamma.values()}  eta {sorted({s.eta for s in specs}, reverse=True)}  "
        f"seeds {preset.seeds}  steps {steps}  runs {len(specs)}  "
        f"teacher_mlp hidden={preset.data.hidden} outputs={preset.data.outputs}"
    )
    warm_toml = PRESET_TOML.format(steps=3, input_dim=args.input_dim)
    flops = step_flops(mlp_macs(arch), preset.train.batch_size)
    compare(preset_toml, warm_toml, specs, steps, flops, repeats, device, "")


def write_images(path: Path, samples: int) -> Path:
    """CIFAR-shaped random images with balanced random labels, as an uncompressed .npz.

    N(0, 1) pixels stand in for normalized CIFAR (the npz reader keeps float32 X as is); every
    class occurs, since the reader counts classes from the largest label.
    """
    rng = np.random.default_rng(0)
    images = rng.standard_normal((samples, *IMAGE_SHAPE), dtype=np.float32)
    np.savez(path, X=images, y=rng.permutation(np.arange(samples) % CLASSES))
    return path


def bench_cnn(args: argparse.Namespace, repeats: int, device: torch.device) -> None:
    """The CNN grid on freshly written random images: as bench_mlp, ending `cnn speedup: X`."""
    steps = 10 if args.quick else args.cnn_steps
    with tempfile.TemporaryDirectory(prefix="bench-engine-images-") as root:
        path = write_images(Path(root) / "images.npz", max(steps, 3) * CNN_BATCH).as_posix()
        preset_toml, warm_toml = (
            CNN_PRESET_TOML.format(width=args.cnn_width, path=path, batch=CNN_BATCH, steps=count)
            for count in (steps, 3)
        )
        preset = parse_preset(preset_toml, source="bench/engine.py")
        specs = expand(preset)
        arch = cnn_arch(preset.network)
        n = arch.width
        print(
            f"grid: CNN N={n} (conv {n}, conv {2 * n}, linear {8 * n}, readout {CLASSES}) "
            f"{arch.parameter_count()} parameters  random {'x'.join(map(str, IMAGE_SHAPE))} "
            f"images, {CLASSES} classes, MSE on one-hot  B={preset.train.batch_size} "
            f"{preset.train.dtype}  gamma {preset.gamma.values()}  "
            f"eta {sorted({s.eta for s in specs}, reverse=True)}  seeds {preset.seeds}  "
            f"steps {steps}  runs {len(specs)}"
        )
        flops = step_flops(cnn_macs(arch), preset.train.batch_size)
        compare(preset_toml, warm_toml, specs, steps, flops, repeats, device, "cnn ")


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
    the speedups (prefixed by `label`)."""
    matmul_before = matmul_gflops(device)
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
    matmul_after = matmul_gflops(device)
    print(
        f"dense fp32 matmul 2048^3: {matmul_before:.1f} GFLOP/s before, "
        f"{matmul_after:.1f} after"
        + (
            "  (NOISY MACHINE: rates drifted)"
            if abs(matmul_after / matmul_before - 1) > 0.2
            else ""
        )
        + f"; oneDNN {onednn_gflops(device)} GFLOP/s"
    )
    best = min(range(repeats), key=lambda i: engines[i].seconds)
    engine, trainer = engines[best], trainers[best]
    loop = min(loops, key=lambda r: r.seconds)
    seeds = len({spec.seed for spec in specs})
    report(flops, seeds, steps, engine, trainer, loop)
    print(
        f"{label}speedup excluding engine setup: "
        f"{loop.seconds / (trainer.compute_seconds + trainer.commit_seconds):.2f}"
    )
    print(f"{label}speedup: {loop.seconds / engine.seconds:.2f}")


def report(
    flops: tuple[float, float],
    seeds: int,
    steps: int,
    engine: SideResult,
    trainer: TimedTrainer,
    loop: SideResult,
) -> None:
    """Print each side's rates, the divergence counts and the final-loss cross-check;
    `flops` is step_flops of the grid's model."""
    train_flops, center_flops = flops
    useful = sum(useful_steps(loop, steps).values())
    executed = engine_executed_steps(engine, steps, trainer.options.sync_every)
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


if __name__ == "__main__":
    sys.exit(main())
