"""One CNN training step of two checkouts' convnet.py, interleaved in ONE process.

    python bench/cnn_step.py OLD_ROOT [--threads 1] [--rounds 12] [--steps 20]

Loads OLD_ROOT/gamma_tui/engine/convnet.py next to this checkout's and times one step of
bench/engine.py's CNN grid (24 bias-free members N = 16 on 3×32×32 images, batch 64, float32:
the members' forward, the centering forward of one seed, loss_and_grad, sgd_step) with each,
alternating one step of one with one of the other (the order flips every round), `--rounds`
times; the median of each counts. Alternating this finely makes other processes' load hit both
sides alike, which whole-grid timings on a shared machine do not.

Before timing it trains `--steps` SGD steps from the same init with each side and prints the
largest relative difference of the final parameters and losses: a formulation change must
stay within float32 rounding of the old one (a loose bound, 1e-4, since rounding differences
grow over the steps of a chaotic training run).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType

import torch

from gamma_tui.engine import convnet
from gamma_tui.engine.parameterization import loss_and_grad

MEMBERS, BATCH, WIDTH, IMAGE, CLASSES = 24, 64, 16, (3, 32, 32), 10


def load(root: str) -> ModuleType:
    """ROOT's convnet module, under another name."""
    path = f"{root}/gamma_tui/engine/convnet.py"
    spec = importlib.util.spec_from_file_location("other_convnet", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stepper(module: ModuleType) -> tuple[Callable[[int], torch.Tensor], list[torch.Tensor]]:
    """One training step (on batch `index`) of the grid with `module`'s ensemble, and the
    parameters it trains."""
    arch = module.ConvArchitecture(IMAGE, WIDTH, CLASSES, False)
    inits = [arch.init(seed) for seed in range(MEMBERS)]
    init = [torch.stack(group).float().contiguous() for group in zip(*inits, strict=True)]
    model = arch.ensemble([p.clone() for p in init])
    frozen = arch.ensemble([p[:1].clone() for p in init])
    gamma = torch.logspace(-1, 2, 4).repeat_interleave(MEMBERS // 4)
    rate = torch.full((MEMBERS,), 1e-2 * WIDTH)
    generator = torch.Generator().manual_seed(0)
    xs = torch.randn(4, BATCH, *IMAGE, generator=generator)
    ys = torch.nn.functional.one_hot(torch.arange(4 * BATCH) % CLASSES).float().view(4, BATCH, -1)
    rows = torch.zeros(MEMBERS, dtype=torch.long)

    def step(index: int) -> torch.Tensor:
        x, y = xs[index % 4], ys[index % 4]
        f_mu, context = model.forward(x)
        f_mu0 = frozen.predict(x).index_select(0, rows)
        value, grad = loss_and_grad(f_mu, f_mu0, gamma, rate, y, "mse")
        model.sgd_step(x, context, grad)
        return value

    return step, model.params


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |a|."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", help="root of the other checkout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sides = {"old": stepper(load(args.old)), "new": stepper(convnet)}
    losses = {name: [step(i) for i in range(args.steps)] for name, (step, _) in sides.items()}
    worst_loss = max(relative(a, b) for a, b in zip(losses["old"], losses["new"], strict=True))
    params = zip(sides["old"][1], sides["new"][1], strict=True)
    worst_param = max(relative(a, b) for a, b in params)
    agree = "within" if max(worst_loss, worst_param) <= 1e-4 else "BEYOND"
    print(
        f"after {args.steps} steps: losses differ by {worst_loss:.1e}, parameters by "
        f"{worst_param:.1e} (relative): {agree} float32 rounding"
    )
    times: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(args.rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            start = time.perf_counter()
            sides[name][0](index)
            times[name].append(time.perf_counter() - start)
    old, new = (statistics.median(times[name]) for name in ("old", "new"))
    print(f"threads {args.threads}  median step: old {old * 1e3:.0f} ms, new {new * 1e3:.0f} ms")
    print(f"step speedup new/old: {old / new:.2f}")
    return 0 if agree == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
