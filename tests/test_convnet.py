"""The reference CNN as a batched ensemble: centering, ensemble = alone, 1/γ output scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gamma_tui.cache import Cache
from gamma_tui.config import expand, parse_preset
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.runner import register

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=16, commit_seconds=0.0)


def image_preset(tmp_path: Path, loss: str = "mse") -> str:
    """A tiny CNN sweep on 1x12x12 random images with 3 classes."""
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(
        data, X=rng.integers(0, 256, (2000, 1, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 2000)
    )
    return (
        f'seeds = 2\n[network]\nkind = "cnn"\nwidth = 4\n[data]\nkind = "npz"\npath = "{data}"\n'
        f'[train]\nbatch_size = 8\nsteps = 30\nloss = "{loss}"\n'
        "[gamma]\nmin = 0.1\nmax = 10\nper_decade = 1\n"
        "[eta]\nscale = 'relative'\nmin = 0.1\nmax = 1\nper_decade = 1\n"
    )


def train_all(cache: Cache, text: str) -> dict[str, np.ndarray]:
    specs = register(cache, parse_preset(text), text)
    for key in {s.shard_key for s in specs}:
        ShardTrainer(cache, "t", CPU).train([s.run_id for s in specs if s.shard_key == key])
    return {k: v.loss for k, v in cache.curves().items()}


@pytest.mark.parametrize(("loss", "step0"), [("mse", 1 / 3), ("xent", float(np.log(3)))])
def test_cnn_starts_at_the_centered_loss(tmp_path: Path, loss: str, step0: float) -> None:
    with Cache(tmp_path / "runs") as cache:
        curves = train_all(cache, image_preset(tmp_path, loss))
    assert len(curves) == 3 * 2 * 2
    for values in curves.values():
        assert values[0] == pytest.approx(step0, rel=1e-6)


def test_cnn_member_matches_training_alone(tmp_path: Path) -> None:
    text = image_preset(tmp_path)
    with Cache(tmp_path / "grid") as cache:
        grid = train_all(cache, text)
    spec = [s for s in expand(parse_preset(text)) if s.gamma == 1.0][1]
    with Cache(tmp_path / "alone") as cache:
        cache.register_sweep("one", text, {}, [spec], 30)
        ShardTrainer(cache, "t", CPU).train([spec.run_id])
        alone = cache.curves()[spec.run_id].loss
    assert len(alone) == 30
    np.testing.assert_allclose(alone, grid[spec.run_id], rtol=1e-4, atol=1e-7)


def test_cnn_output_scale_and_depth_label() -> None:
    arch = ConvArchitecture((1, 12, 12), width=4, outputs=3, bias=False)
    params = [p.unsqueeze(0) for p in arch.init(0)]
    moved = arch.ensemble([p + 0.1 * torch.randn_like(p) for p in params])
    x = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        delta = moved.forward(x)[0] - arch.ensemble(params).forward(x)[0]
    assert delta.abs().max() > 0 and arch.depth_label == 4
    assert arch.parameter_count() == 4 * 9 + 8 * 4 * 9 + 32 * 8 * 1 + 3 * 32


@pytest.mark.parametrize(
    ("shape", "bias", "members"),
    [((3, 12, 12), True, 3), ((1, 13, 15), False, 1), ((2, 14, 17), True, 2)],
)
def test_hand_written_backward_equals_autograd(
    shape: tuple[int, int, int], bias: bool, members: int
) -> None:
    """Forward and every parameter's gradient of the batched, hand-written CNN equal autograd
    through each member written plainly, including odd sizes that a pool leaves a row of."""
    arch = ConvArchitecture(shape, width=4, outputs=5, bias=bias)
    generator = torch.Generator().manual_seed(1)
    per_member = [
        [p + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in arch.init(s)]
        for s in range(members)
    ]
    x = torch.randn(6, *shape, generator=generator, dtype=torch.float64)
    model = arch.ensemble([torch.stack(group) for group in zip(*per_member, strict=True)])
    out, ctx = model.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grads = model.gradients(x, ctx, grad_out)
    for index, params in enumerate(per_member):
        leaves = [p.clone().requires_grad_(True) for p in params]
        expected = arch.member_forward(leaves, x)
        torch.testing.assert_close(out[index], expected.detach(), rtol=1e-12, atol=1e-12)
        autograd = torch.autograd.grad(expected, leaves, grad_out[index])
        for grad, want in zip(grads, autograd, strict=True):
            torch.testing.assert_close(grad[index], want, rtol=1e-10, atol=1e-12)


def test_sgd_step_moves_every_parameter_by_minus_its_gradient() -> None:
    arch = ConvArchitecture((3, 12, 12), width=4, outputs=5, bias=True)
    params = [torch.stack([p, p + 0.1]) for p in arch.init(0)]
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64)
    model = arch.ensemble([p.clone() for p in params])
    out, ctx = model.forward(x)
    grad_out = torch.randn_like(out)
    grads = arch.ensemble([p.clone() for p in params]).gradients(x, model.forward(x)[1], grad_out)
    model.sgd_step(x, ctx, grad_out)
    for moved, start, grad in zip(model.params, params, grads, strict=True):
        torch.testing.assert_close(moved, start - grad, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # torch.compile takes seconds to compile on CPU
def test_compiled_cnn_step_is_one_graph_and_trains_like_the_eager_one(tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    text = image_preset(tmp_path)
    curves = {}
    for compiled in (False, True):
        options = TrainerOptions(torch.device("cpu"), commit_seconds=0.0, compile_step=compiled)
        with Cache(tmp_path / f"runs-{compiled}") as cache:
            specs = register(cache, parse_preset(text), text)
            breaks = sum(counters["graph_break"].values())
            for key in {s.shard_key for s in specs}:
                shard = [s.run_id for s in specs if s.shard_key == key]
                ShardTrainer(cache, "t", options).train(shard)
            assert sum(counters["graph_break"].values()) == breaks
            curves[compiled] = {k: v.loss for k, v in cache.curves().items()}
    for run_id, eager in curves[False].items():
        np.testing.assert_allclose(curves[True][run_id], eager, rtol=1e-4, atol=1e-7)
