"""gamma_tui.nn and the kind = "module" family through the real trainer, in-process.

An MLP written with gamma_tui.nn as your own module starts from the same draw as the built-in
MLP and trains like it; the module family resumes bitwise and a member of its grid equals the
run trained alone; the layers carry the paper's multipliers and N(0, 1) draws.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import torch

from gamma_tui.cache import Cache
from gamma_tui.config import Preset, RunSpec, expand, parse_preset
from gamma_tui.costs import flops_per_run
from gamma_tui.engine.module_family import ModuleArchitecture
from gamma_tui.engine.shard import model_family
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.nn import Conv2d, Linear, Readout

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=8, commit_seconds=0.0)

MLP_SOURCE = """
    from torch import nn
    from gamma_tui.nn import Linear, Readout

    def build(input_shape, outputs, width, depth=3):
        layers = [nn.Flatten(), Linear(input_shape[0], width), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, Readout(width, outputs))
"""


def sweep_text(network: str, optimizer: str = "sgd", steps: int = 12) -> str:
    """A 2 γ × 2 η × 2 seed float64 sweep on a 4-class teacher with a test set."""
    return (
        f"seeds = 2\n[network]\n{network}\n"
        '[data]\nkind = "teacher_classes"\ninput_dim = 12\noutputs = 4\ntest_size = 64\n'
        f'[train]\nbatch_size = 8\nsteps = {steps}\nloss = "xent"\noptimizer = "{optimizer}"\n'
        'dtype = "float64"\ncheckpoint_every = 8\n'
        "[gamma]\nmin = 0.1\nmax = 10\nper_decade = 0.5\n"
        "[eta]\nmin = 0.01\nmax = 0.1\nper_decade = 1\n"
    )


def module_sweep(folder: Path, module: str, optimizer: str = "sgd", steps: int = 12) -> Preset:
    """The sweep with the MLP above as your own network, from `module`.py in `folder` (a
    module name per test: one process imports each name once)."""
    (folder / f"{module}.py").write_text(textwrap.dedent(MLP_SOURCE), encoding="utf-8")
    network = f'kind = "module"\nfactory = "{module}:build"\nwidth = 8\nkwargs = {{ depth = 3 }}'
    return parse_preset(sweep_text(network, optimizer, steps), folder=folder)


def train(cache: Cache, preset: Preset, specs: list[RunSpec] | None = None) -> list[RunSpec]:
    """Register `specs` (default: the preset's grid) and train them in-process, one shard."""
    specs = specs or expand(preset)
    cache.register_sweep(preset.name, "", {}, specs, preset.train.steps)
    ShardTrainer(cache, "t", CPU).train([s.run_id for s in specs])
    return specs


def test_layers_carry_the_paper_multipliers_and_standard_normal_draws() -> None:
    torch.manual_seed(0)
    hidden, readout = Linear(400, 300, bias=True), Readout(300, 7)
    conv = Conv2d(16, 500, 3, bias=True)
    for weight in (hidden.weight.detach(), readout.weight.detach(), conv.weight.detach()):
        assert abs(float(weight.mean())) < 0.02 and abs(float(weight.std()) - 1) < 0.02
    assert hidden.bias is not None and conv.bias is not None
    assert not hidden.bias.any() and not conv.bias.any() and readout.bias is None
    x = torch.randn(5, 400)
    torch.testing.assert_close(hidden(x), (x @ hidden.weight.T + hidden.bias) / 20.0)
    h = torch.randn(5, 300)
    torch.testing.assert_close(readout(h), h @ readout.weight.T / 300.0)
    image = torch.randn(2, 16, 6, 6)
    plain = torch.nn.functional.conv2d(image, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(conv(image), plain / 4.0)
    assert conv(image).shape == (2, 500, 6, 6)


def test_your_mlp_starts_from_the_built_in_draw_and_trains_like_it(tmp_path: Path) -> None:
    """gamma_tui.nn layers draw in registration order from the seed, as the built-in MLP."""
    mine = module_sweep(tmp_path, "mlp_like_builtin")
    builtin = parse_preset(sweep_text('kind = "mlp"\nwidth = 8\ndepth = 3'))
    curves, evals, grids = {}, {}, []
    for name, preset in (("mine", mine), ("builtin", builtin)):
        with Cache(tmp_path / name) as cache:
            grids.append(train(cache, preset))
            curves.update(cache.curves([s.run_id for s in grids[-1]]))
            evals.update(cache.evals([s.run_id for s in grids[-1]]))
    ours, theirs = grids
    assert {s.run_id for s in ours}.isdisjoint(s.run_id for s in theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.gamma, a.eta, a.seed) == (b.gamma, b.eta, b.seed)
        assert np.ptp(curves[a.run_id].loss) > 0
        # the fast path's hand-written backward against autograd through vmap
        np.testing.assert_allclose(curves[a.run_id].loss, curves[b.run_id].loss, rtol=1e-5)
        np.testing.assert_allclose(evals[a.run_id].loss, evals[b.run_id].loss, rtol=1e-5)


def test_your_module_resumes_bitwise_and_a_grid_member_equals_it_alone(tmp_path: Path) -> None:
    preset = module_sweep(tmp_path, "resumable_mlp", optimizer="adam")
    with Cache(tmp_path / "straight") as cache:
        specs = train(cache, preset)
        straight = cache.curves([s.run_id for s in specs])
    short = module_sweep(tmp_path, "resumable_mlp", optimizer="adam", steps=5)
    with Cache(tmp_path / "resumed") as cache:
        train(cache, short)
        train(cache, preset)
        resumed = cache.curves([s.run_id for s in specs])
    for spec in specs:
        np.testing.assert_array_equal(resumed[spec.run_id].loss, straight[spec.run_id].loss)
    spec = specs[5]
    with Cache(tmp_path / "alone") as cache:
        train(cache, preset, [spec])
        alone = cache.curves([spec.run_id])[spec.run_id].loss
    assert len(alone) == 12 and np.ptp(alone) > 0
    np.testing.assert_allclose(alone, straight[spec.run_id].loss, rtol=1e-5)


def test_the_initial_draw_depends_only_on_the_seed(tmp_path: Path) -> None:
    preset = module_sweep(tmp_path, "seeded_mlp")
    family = model_family(preset.network, _Stream(), "sgd", preset.module_digest)
    assert isinstance(family, ModuleArchitecture)
    torch.manual_seed(123)  # the global generator's state does not matter
    first = family.init(0)
    torch.rand(7)
    again, other = family.init(0), family.init(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert all(p.dtype == torch.float64 for p in first)
    assert family.parameter_count() == 12 * 8 + 8 * 8 + 8 * 4
    assert family.depth_label == 3 and family.width == 8
    assert math.isnan(flops_per_run(preset))  # unknown without importing the code


class _Stream:
    """What model_family reads of a synthetic stream."""

    input_dim, outputs = 12, 4
