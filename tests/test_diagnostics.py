"""The engine's curvature diagnostics against explicit Hessians, Jacobians and closed forms."""

from __future__ import annotations

import pytest
import torch

from gamma_tui.config import NetworkConfig
from gamma_tui.engine import diagnostics
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.parameterization import Architecture

ALL = diagnostics.Settings(sharpness=True, trace=True, ntk=True, directional=True, iterations=20)


def _stack(groups: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack(g) for g in zip(*groups, strict=True)]


def _explicit(call, loss, params, f0, gamma, x, target, member):
    """The explicit Hessian, gradient and Jacobian of one member's loss (flattened)."""
    point = tuple(p[member] for p in params)
    shapes, sizes = [p.shape for p in point], [p.numel() for p in point]

    def unflatten(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(a.view(s) for a, s in zip(torch.split(v, sizes), shapes, strict=True))

    def flat_loss(v: torch.Tensor) -> torch.Tensor:
        return diagnostics._member_loss(call, loss)(
            unflatten(v), f0[member], gamma[member], x, target
        )

    def flat_output(v: torch.Tensor) -> torch.Tensor:
        return ((call(unflatten(v), x) - f0[member]) / gamma[member]).reshape(-1)

    v = torch.cat([p.reshape(-1) for p in point])
    hessian = torch.autograd.functional.hessian(flat_loss, v)
    gradient = torch.autograd.functional.jacobian(flat_loss, v)
    jacobian = torch.autograd.functional.jacobian(flat_output, v)
    return hessian, gradient, jacobian


@pytest.fixture
def mlp_case():
    """Three members of a depth-3 MLP moved away from their init, with distinct γ."""
    arch = Architecture.of(NetworkConfig(kind="mlp", width=8, depth=3), 5, 2)
    generator = torch.Generator().manual_seed(1)
    frozen = _stack([arch.init(s) for s in (0, 1, 2)])
    params = [p + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in frozen]
    x = torch.randn(16, 5, generator=generator, dtype=torch.float64)
    target = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    gamma = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    call = diagnostics.member_call(arch)
    f0 = torch.func.vmap(call, in_dims=(0, None))(tuple(frozen), x)
    return call, params, f0, gamma, x, target


def test_mlp_matches_explicit_hessian_for_every_member(mlp_case) -> None:
    call, params, f0, gamma, x, target = mlp_case
    out = diagnostics.measure(call, params, f0, gamma, x, target, "mse", ALL)
    assert set(out) == set(ALL.names())
    for member in range(3):
        hessian, gradient, jacobian = _explicit(call, "mse", params, f0, gamma, x, target, member)
        top = torch.linalg.eigvalsh(hessian)[-1]
        assert out["sharpness"][member] == pytest.approx(top.item(), rel=1e-3)
        directional = gradient @ hessian @ gradient / (gradient @ gradient)
        assert out["directional"][member] == pytest.approx(directional.item(), rel=1e-6)
        kernel = jacobian @ jacobian.T
        assert out["ntk"][member] == pytest.approx(torch.linalg.eigvalsh(kernel)[-1].item())
        ggn = 2.0 / target.numel() * jacobian.T @ jacobian
        assert out["ggn"][member] == pytest.approx(torch.linalg.eigvalsh(ggn)[-1].item())
        y = target.reshape(-1)
        alignment = y @ kernel @ y / (kernel.norm() * (y @ y))
        assert out["alignment"][member] == pytest.approx(alignment.item())


def test_trace_lies_within_the_hutchinson_error_bar(mlp_case) -> None:
    call, params, f0, gamma, x, target = mlp_case
    settings = diagnostics.Settings(sharpness=False, trace=True, iterations=200)
    out = diagnostics.measure(call, params, f0, gamma, x, target, "mse", settings)
    for member in range(3):
        hessian = _explicit(call, "mse", params, f0, gamma, x, target, member)[0]
        error = out["trace_error"][member].item()
        assert 0 < error < abs(torch.trace(hessian).item())
        assert abs(out["trace"][member].item() - torch.trace(hessian).item()) < 4 * error


def test_sharpness_scales_as_inverse_gamma_squared_at_init(mlp_case) -> None:
    """At θ = θ0 the centered output is 0 and J ∝ 1/γ, so λ_max·γ² is the same for every γ."""
    call, _params, _f0, _gamma, x, target = mlp_case
    arch = Architecture.of(NetworkConfig(kind="mlp", width=8, depth=3), 5, 2)
    frozen = _stack([arch.init(0)] * 3)
    f0 = torch.func.vmap(call, in_dims=(0, None))(tuple(frozen), x)
    gamma = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64)
    out = diagnostics.measure(call, frozen, f0, gamma, x, target, "mse", ALL)
    scaled = out["ggn"] * gamma**2
    assert torch.allclose(scaled, scaled[0].expand(3), rtol=1e-9)
    # the Hessian's residual term is O(1/γ), against the Gauss-Newton term's O(1/γ²)
    assert out["sharpness"][0] == pytest.approx(out["ggn"][0].item(), rel=1e-2)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_chain_matches_its_closed_form(depth: int) -> None:
    """f = (w^L - 1)/γ with all w_l = w: H = 2 w^(2L-2)/γ² 11ᵀ + 2 (f - y) w^(L-2)/γ (11ᵀ - I),
    whose eigenvalues are along 1 and orthogonal to it."""
    arch = Architecture.of(NetworkConfig(kind="chain", depth=depth), 1, 1)
    call = diagnostics.member_call(arch)
    w = torch.tensor([1.0, 1.2, 0.9, 1.05], dtype=torch.float64)
    gamma = torch.tensor([0.01, 0.5, 2.0, 30.0], dtype=torch.float64)
    params = [w.view(4, 1, 1).clone() for _ in range(depth)]
    frozen = [torch.ones(4, 1, 1, dtype=torch.float64) for _ in range(depth)]
    x = torch.ones(1, 1, dtype=torch.float64)
    y = torch.ones(1, 1, dtype=torch.float64)
    f0 = torch.func.vmap(call, in_dims=(0, None))(tuple(frozen), x)
    out = diagnostics.measure(call, params, f0, gamma, x, y, "mse", ALL)
    f = (w**depth - 1) / gamma
    curvature = 2 * (f - 1) * w ** (depth - 2) / gamma
    along = 2 * depth * w ** (2 * depth - 2) / gamma**2 + (depth - 1) * curvature
    closed = torch.maximum(along, -curvature)
    assert torch.allclose(out["sharpness"], closed, rtol=1e-9)
    trace = along - (depth - 1) * curvature
    assert ((out["trace"] - trace).abs() <= 4 * out["trace_error"] + 1e-9 * trace.abs()).all()
    assert torch.allclose(out["ggn"], 2 * depth * w ** (2 * depth - 2) / gamma**2, rtol=1e-9)


def test_cross_entropy_gauss_newton_and_cnn_members() -> None:
    """The CNN (its plain member forward under vmap) with cross-entropy: λ_max and the
    Gauss-Newton top eigenvalue against the explicit matrices."""
    arch = ConvArchitecture((1, 10, 10), 2, 3, False)
    generator = torch.Generator().manual_seed(2)
    frozen = _stack([arch.init(s) for s in (0, 1)])
    params = [p + 0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in frozen]
    x = torch.randn(4, 1, 10, 10, generator=generator, dtype=torch.float64)
    classes = torch.tensor([0, 2, 1, 2])
    gamma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    call = diagnostics.member_call(arch)
    f0 = torch.func.vmap(call, in_dims=(0, None))(tuple(frozen), x)
    # the plain member forward the diagnostics differentiate is the hand-written ensemble's
    assert torch.allclose(f0, arch.ensemble(frozen).predict(x), rtol=1e-12, atol=1e-14)
    settings = diagnostics.Settings(sharpness=True, ntk=True, iterations=40)
    out = diagnostics.measure(call, params, f0, gamma, x, classes, "xent", settings)
    for member in range(2):
        hessian, _g, jacobian = _explicit(call, "xent", params, f0, gamma, x, classes, member)
        assert out["sharpness"][member] == pytest.approx(
            torch.linalg.eigvalsh(hessian)[-1].item(), rel=1e-3
        )
        f = (call(tuple(p[member] for p in params), x) - f0[member]) / gamma[member]
        probs = torch.softmax(f, dim=1)
        blocks = (torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]) / 4
        output_hessian = torch.block_diag(*blocks)
        ggn = jacobian.T @ output_hessian @ jacobian
        assert out["ggn"][member] == pytest.approx(torch.linalg.eigvalsh(ggn)[-1].item())
