"""A gated MLP (GLU blocks) in the μP + γ layout, for `[network] kind = "module"`.

    h1      = W0 x / sqrt(D)
    h(l+1)  = h(l) + (U φ(h) ⊙ σ(V φ(h))) / sqrt(N)    l = 1 .. blocks
    f_mu(x) = W_out φ(h) / N

with φ = ReLU, every weight N(0, 1) (gamma_tui.nn) and the residual sum divided by
sqrt(blocks + 1) so h stays O(1) at any depth. gamma-tui calls
`build(input_shape=..., outputs=..., width=N, **kwargs)` and trains the returned module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gamma_tui.nn import Linear, Readout


class GatedBlock(nn.Module):
    """U φ(h) ⊙ sigmoid(V φ(h)): a gated linear unit on the residual stream."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.value, self.gate = Linear(width, width), Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.relu(h)
        return self.value(a) * torch.sigmoid(self.gate(a))


class GatedMLP(nn.Module):
    """An embedding, `blocks` residual gated blocks and a μP readout."""

    def __init__(self, inputs: int, outputs: int, width: int, blocks: int) -> None:
        super().__init__()
        self.embed = Linear(inputs, width)
        self.blocks = nn.ModuleList(GatedBlock(width) for _ in range(blocks))
        self.readout = Readout(width, outputs)
        self.residual = 1.0 / math.sqrt(blocks + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.readout(torch.relu(h * self.residual))


def build(input_shape: tuple[int, ...], outputs: int, width: int, blocks: int = 2) -> nn.Module:
    """The factory of examples/gated_mlp.toml."""
    return GatedMLP(math.prod(input_shape), outputs, width, blocks)
