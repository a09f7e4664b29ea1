"""What a member's arithmetic independent of its ensemble would cost, on the bench MLP grid.

    python bench/reproducibility.py [--steps 200] [--threads 1] [--repeats 3] [--no-cbwr]

The engine trains an ensemble of E members as one computation: the first layer is one GEMM
with E·N output columns (oneDNN on CPU float32), the others batched matmuls over E. BLAS
picks kernels and blockings by shape and CPU, so a member's rounding may depend on E (the
member alone vs inside the grid), and on some CPUs it does. Two ways to make a member's
arithmetic independent of its ensemble, timed here against the batched step on the MLP grid of
bench/engine.py (D=784, N=128, L=3, C=10, batch 64, E=24 members, one seed, float32):

- per-member: every member steps as its own ensemble of one (E calls per step, shapes that
  never depend on E): independent by construction, on any CPU or GPU.
- MKL conditional numerical reproducibility: MKL_CBWR=COMPATIBLE or AVX2 (set before MKL
  loads, so each setting runs in a child process) with GAMMA_TUI_ONEDNN=0 (oneDNN, which does
  the first layer otherwise, is outside MKL's CNR). CNR fixes MKL's code path across CPUs for
  one shape and thread count; it promises nothing across shapes, so it is timed here, not
  relied on.

Each line prints the best of `--repeats` timings of `--steps` steps (compute only, no cache)
and the ratio to the batched step measured in the same process; the per-member line also
checks that its losses are bitwise those of each member trained alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from gamma_tui.config import expand, parse_preset
from gamma_tui.engine.data import make_stream
from gamma_tui.engine.optimizers import step_sizes
from gamma_tui.engine.parameterization import Architecture, loss_and_grad

sys.path.insert(0, str(Path(__file__).parent))
from mlp_peak import preset_text  # noqa: E402  (the bench MLP grid, defined once)

GRID = preset_text(200, "bench")


class Grid:
    """The grid's members as stacked parameters, steppable batched or one member at a time."""

    def __init__(self, only: int | None = None) -> None:
        self.specs = expand(parse_preset(GRID))
        if only is not None:
            self.specs = self.specs[only : only + 1]
        spec = self.specs[0]
        self.stream = make_stream(spec.data, spec.batch_size, spec.loss, torch.float32, "cpu")
        self.arch = Architecture.of(spec.network, self.stream.input_dim, self.stream.outputs)
        self.gamma = torch.tensor([s.gamma for s in self.specs], dtype=torch.float32)
        etas = [s.eta for s in self.specs]
        self.rate = torch.tensor(step_sizes("sgd", etas, self.arch.width), dtype=torch.float32)
        self.frozen = self.arch.ensemble(self._stack([self.arch.init(spec.seed)]))
        self.reset()

    def _stack(self, groups: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        return [torch.stack(g).float().contiguous() for g in zip(*groups, strict=True)]

    def reset(self) -> None:
        """Every member back at its initial parameters."""
        self.params = self._stack([self.arch.init(s.seed) for s in self.specs])

    def _step(self, members: slice, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        model = self.arch.ensemble([p[members] for p in self.params])  # views: updated in place
        f_mu, pre = model.forward(x)
        f_mu0 = self.frozen.predict(x).expand(model.size, -1, -1)
        gamma, rate = self.gamma[members], self.rate[members]
        value, grad = loss_and_grad(f_mu, f_mu0, gamma, rate, target, "mse")
        model.sgd_step(x, pre, grad)
        return value

    def train(self, steps: int, per_member: bool) -> torch.Tensor:
        """(E, steps) losses, batched or one member at a time."""
        losses = torch.empty(len(self.specs), steps)
        every = [slice(i, i + 1) for i in range(len(self.specs))]
        for step in range(steps):
            batch = self.stream.batch(step)
            if per_member:
                for one in every:
                    losses[one, step] = self._step(one, batch.x, batch.target)
            else:
                losses[:, step] = self._step(slice(None), batch.x, batch.target)
        return losses


def best_seconds(grid: Grid, steps: int, per_member: bool, repeats: int) -> float:
    """Best wall time of `repeats` trainings from the init."""
    times = []
    for _ in range(repeats):
        grid.reset()
        began = time.perf_counter()
        grid.train(steps, per_member)
        times.append(time.perf_counter() - began)
    return min(times)


def measure(steps: int, repeats: int, per_member: bool) -> dict[str, float | bool]:
    """Batched seconds, per-member seconds (if asked) and whether per-member is bitwise alone."""
    grid = Grid()
    grid.train(5, False)  # warm-up: oneDNN primitives, allocator
    result: dict[str, float | bool] = {"batched": best_seconds(grid, steps, False, repeats)}
    if per_member:
        result["per_member"] = best_seconds(grid, steps, True, repeats)
        grid.reset()
        together = grid.train(steps, True)
        alone = [Grid(only=i).train(steps, False)[0] for i in range(len(grid.specs))]
        bits = torch.stack(alone).view(torch.int32)  # NaNs of diverged members compare equal
        result["bitwise_alone"] = bool(torch.equal(together.view(torch.int32), bits))
    return result


def child(setting: str, steps: int, repeats: int, threads: int) -> dict[str, float | bool]:
    """`measure` in a child process with MKL_CBWR=setting and oneDNN off."""
    env = {**os.environ, "MKL_CBWR": setting, "GAMMA_TUI_ONEDNN": "0"}
    code = [sys.executable, __file__, "--child", "--steps", str(steps)]
    code += ["--repeats", str(repeats), "--threads", str(threads)]
    done = subprocess.run(code, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print each option's seconds and its ratio to the batched step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cbwr", action="store_true", help="skip the MKL_CBWR children")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.steps, args.repeats, per_member=False)))
        return 0
    grid = Grid()
    print(
        f"grid: MLP widths {grid.arch.widths}, batch 64, E={len(grid.specs)}, float32, "
        f"{args.steps} steps, {args.threads} thread(s), best of {args.repeats}"
    )
    own = measure(args.steps, args.repeats, per_member=True)
    batched = float(own["batched"])
    print(f"batched (oneDNN first layer)   {batched:7.2f} s  1.00x")
    print(
        f"per-member (E calls per step)  {own['per_member']:7.2f} s  "
        f"{float(own['per_member']) / batched:.2f}x  bitwise alone: {own['bitwise_alone']}"
    )
    if not args.no_cbwr:
        for setting in ("AUTO", "COMPATIBLE", "AVX2"):
            other = child(setting, args.steps, args.repeats, args.threads)
            again = measure(args.steps, args.repeats, per_member=False)["batched"]
            print(
                f"MKL_CBWR={setting:<10} no oneDNN {other['batched']:7.2f} s  "
                f"{float(other['batched']) / float(again):.2f}x  (batched here {again:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
