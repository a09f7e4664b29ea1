"""One MLP training step of two checkouts' parameterization.py, interleaved in ONE process.

    python bench/mlp_step.py OLD_ROOT [--threads 1] [--rounds 15]

Loads OLD_ROOT/gamma_tui/engine/parameterization.py next to this checkout's and times one
SGD step of bench/engine.py's MLP grid (24 members 784-128-128-10, batch 64, float32: the
members' forward, the centering forward of one seed, loss_and_grad, sgd_step) with each,
alternating ten steps of one with ten of the other and two dense 2048² products of torch.mm
and oneDNN, `--rounds` times; the best time of each counts. Alternating this finely makes
other processes' load hit every side alike, which whole-grid timings on a shared machine do
not. Prints each step's GFLOP/s (matmul FLOPs as in bench/engine.py) as a share of both
dense rates.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from types import ModuleType

import torch

from gamma_tui.engine import parameterization

MEMBERS, BATCH, WIDTHS = 24, 64, (784, 128, 128, 10)


def load(root: str) -> ModuleType:
    """ROOT's parameterization module, under another name."""
    path = f"{root}/gamma_tui/engine/parameterization.py"
    spec = importlib.util.spec_from_file_location("other_parameterization", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stepper(module: ModuleType) -> Callable[[], torch.Tensor]:
    """One training step of the grid with `module`'s ensemble and loss."""
    arch = module.Architecture(WIDTHS, False, "relu", WIDTHS[1])
    init = [torch.stack(group).float() for group in zip(*[arch.init(0)] * MEMBERS, strict=True)]
    model = module.EnsembleMLP(arch, [p.clone() for p in init])
    frozen = module.EnsembleMLP(arch, [p[:1].clone() for p in init])
    gamma = torch.logspace(-1, 2, 4).repeat_interleave(MEMBERS // 4)
    rate = torch.full((MEMBERS,), 1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, WIDTHS[0], generator=generator)
    y = torch.randn(BATCH, WIDTHS[-1], generator=generator)
    rows = torch.zeros(MEMBERS, dtype=torch.long)

    def step() -> torch.Tensor:
        f_mu, context = model.forward(x)
        f_mu0 = frozen.predict(x).index_select(0, rows)
        value, grad = module.loss_and_grad(f_mu, f_mu0, gamma, rate, y, "mse")
        model.sgd_step(x, context, grad)
        return value

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", help="root of the other checkout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = {"old": stepper(load(args.old)), "new": stepper(parameterization)}
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    dense = {
        "torch.mm": lambda: a @ b,
        "oneDNN": lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""),
    }
    best = dict.fromkeys([*steps, *dense], math.inf)
    for function in [*steps.values(), *dense.values()]:
        function()
    for _ in range(args.rounds):
        for name, function in steps.items():
            start = time.perf_counter()
            for _ in range(10):
                function()
            best[name] = min(best[name], (time.perf_counter() - start) / 10)
        for name, function in dense.items():
            start = time.perf_counter()
            function()
            function()
            best[name] = min(best[name], (time.perf_counter() - start) / 2)
    macs = sum(i * o for i, o in zip(WIDTHS[:-1], WIDTHS[1:], strict=True))
    member = 2 * BATCH * macs * 2 + 2 * BATCH * (macs - WIDTHS[0] * WIDTHS[1])
    flops = MEMBERS * member + 2 * BATCH * macs
    peak = {name: 2 * 2048**3 / best[name] / 1e9 for name in dense}
    rates = ", ".join(f"{name} {rate:.0f}" for name, rate in peak.items())
    print(f"threads {args.threads}  dense GFLOP/s: {rates}")
    for name in steps:
        rate = flops / best[name] / 1e9
        print(
            f"{name}: step {best[name] * 1e3:.2f} ms, {rate:.0f} GFLOP/s = "
            f"{rate / peak['torch.mm']:.0%} of torch.mm, {rate / peak['oneDNN']:.0%} of oneDNN"
        )
    print(f"step speedup new/old: {best['old'] / best['new']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
