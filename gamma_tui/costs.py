"""Compute estimates for planning: forward multiply-adds by model kind, FLOPs of a run.

Used for the work shown by the launcher and `run --dry-run`, and for the huge-sweep
confirmation. Formulas count the multiply-adds of weight layers (convolutions at every output
position, attention's q·k and weights·v); element-wise work is left out. No torch here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gamma_tui.schedule import is_eval_step

if TYPE_CHECKING:
    from gamma_tui.config import NetworkConfig, Preset

HUGE_FLOPS = 3e14
"""Sweeps estimated above this many FLOPs (over an hour on a laptop CPU) ask before starting."""

HUGE_RUNS = 20_000
"""Sweeps with at least this many runs ask before starting."""


def flops_per_run(preset: Preset) -> float:
    """Approximate FLOPs of one run: 6 x batch x forward multiply-adds per step, plus a
    forward pass over the held-out set per evaluation; NaN when the input shape is unknown
    (an .npz that cannot be read)."""
    found = preset.data.sample_shape()
    if found is None:
        return math.nan
    macs = forward_macs(preset.network, *found)
    training = 6.0 * preset.train.batch_size * macs * preset.train.steps
    return training + 2.0 * preset.data.test_size * macs * evaluations(preset.train.steps)


def is_huge(preset: Preset) -> bool:
    """Whether starting this sweep deserves a confirmation (hours of compute or a huge grid)."""
    flops = flops_per_run(preset) * preset.run_count()
    return flops >= HUGE_FLOPS or preset.run_count() >= HUGE_RUNS


def forward_macs(network: NetworkConfig, shape: tuple[int, ...], outputs: int) -> float:
    """Multiply-adds of one sample's forward pass through `network` on inputs of `shape`."""
    n = network.width
    if network.kind == "module":
        return math.nan  # your own network: unknown without importing its code
    if network.kind == "chain":
        return float(network.depth)
    if network.kind == "mlp":
        widths = [math.prod(shape), *[n] * (network.depth - 1), outputs]
        return float(sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False)))
    channels, height, width = shape if len(shape) == 3 else (1, 1, math.prod(shape))
    if network.kind == "cnn":
        h1, w1 = height - 2, width - 2
        h2, w2 = h1 // 2 - 2, w1 // 2 - 2
        features = 2 * n * (h2 // 2) * (w2 // 2)
        return float(
            9 * channels * n * h1 * w1
            + 9 * n * 2 * n * h2 * w2
            + features * 8 * n
            + 8 * n * outputs
        )
    if network.kind == "resnet18":
        return _resnet18_macs(channels, height, width, n, outputs)
    tokens = (height // network.patch) * (width // network.patch)
    embed = tokens * channels * network.patch**2 * n
    block = 12 * tokens * n * n + 2 * tokens * tokens * n  # q, k, v, o, 4N MLP; attention
    return float(embed + network.depth * block + n * outputs)


def evaluations(steps: int) -> int:
    """How many held-out evaluations a run of `steps` steps makes: steps 0, 1, 2, 5, 10, ...
    up to `steps`, and `steps` itself (schedule.is_eval_step)."""
    count, scale = 1, 1
    while scale <= steps:
        count += sum(1 for m in (1, 2, 5) if m * scale <= steps)
        scale *= 10
    return count + (0 if is_eval_step(steps) else 1)


def _resnet18_macs(channels: int, height: int, width: int, n: int, outputs: int) -> float:
    """The CIFAR ResNet-18: 3×3 stem, 4 stages of 2 BasicBlocks, 1×1 projection shortcuts."""
    widths = [max(1, int(w * n / 64)) for w in (64, 128, 256, 512)]
    total = 9 * channels * widths[0] * height * width
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        for index in range(2):
            if stage and not index:
                height, width = -(-height // 2), -(-width // 2)
            total += 9 * c_in * c_out * height * width + 9 * c_out * c_out * height * width
            if c_in != c_out or (stage and not index):
                total += c_in * c_out * height * width
            c_in = c_out
    return float(total + c_in * outputs)
