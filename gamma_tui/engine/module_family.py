"""Your own network (`[network] kind = "module"`) as a family of the general vmap path.

The factory named by network.factory is called as

    factory(input_shape=..., outputs=..., width=N, **network.kwargs) -> torch.nn.Module

and the module computes the un-centered output f_mu (B, *input_shape) -> (B, outputs). It is
trained exactly like the built-in ResNet-18 and ViT: a meta-device copy holds the structure,
the members' parameters are stacked and run with vmap(functional_call), and CenteredEnsemble
divides by γ and centers with the frozen initial copy. The one difference is the initial draw:
the module's own parameters as the factory builds them, under torch.manual_seed(seed) with
float64 as the default dtype, so a module built from gamma_tui.nn layers starts as the paper
says (N(0, 1) weights) and any other initialization is the user's choice. Buffers are refused:
vmap runs the members functionally over their parameters only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gamma_tui.config import NetworkConfig, Preset, PresetError, depth_label
from gamma_tui.engine.functional import FunctionalArchitecture
from gamma_tui.factories import FACTORY_KEY, FactoryError, load, one_line


class ModuleArchitecture(FunctionalArchitecture):
    """A factory's module as a family: shapes from a meta build, draws from seeded builds."""

    def __init__(
        self,
        factory: Callable[..., Any],
        arguments: dict[str, Any],
        input_shape: tuple[int, ...],
        outputs: int,
        width: int,
        depth: int,
    ) -> None:
        """`arguments` are the factory's keyword arguments; `outputs` is C of f_mu (B, C)."""
        self.factory, self.arguments, self.outputs = factory, arguments, outputs
        try:
            super().__init__(self._build, input_shape, width, depth)
        except FactoryError:
            raise
        except Exception as error:  # the user's forward on the meta device
            raise FactoryError(
                f"the module's forward failed on a batch of shape (2, {_dims(input_shape)}): "
                f"{one_line(error)}"
            ) from None
        buffers = [name for name, _ in self.module.named_buffers()]
        if buffers:
            raise FactoryError(
                f"the module registers buffers ({', '.join(buffers[:3])}); members train "
                "functionally over their parameters only: compute constants in forward "
                "(BatchNorm: track_running_stats=False)"
            )
        if not self.names:
            raise FactoryError("the module has no parameters to train")

    def _build(self) -> nn.Module:
        """A fresh module from the factory (on the device and dtype in effect)."""
        try:
            module = self.factory(**self.arguments)
        except Exception as error:
            names = ", ".join(self.arguments)
            raise FactoryError(
                f"calling the factory failed: {one_line(error)} (it gets {names}: the last "
                "ones from network.kwargs)"
            ) from None
        if not isinstance(module, nn.Module):
            raise FactoryError(
                f"the factory returned a {type(module).__name__}, not a torch.nn.Module"
            )
        return module

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters (float64, CPU): the module the factory builds
        under torch.manual_seed(seed) with float64 as the default dtype."""
        default = torch.get_default_dtype()
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed)
            torch.set_default_dtype(torch.float64)
            try:
                built = dict(self._build().named_parameters())
            finally:
                torch.set_default_dtype(default)
        return [built[name].detach().to(torch.float64).clone() for name in self.names]


def module_family(
    network: NetworkConfig,
    input_shape: tuple[int, ...],
    outputs: int,
    digest: str | None,
) -> ModuleArchitecture:
    """The family of a kind = "module" network on samples of `input_shape` with `outputs`
    outputs; `digest` is the source digest its runs were registered with."""
    assert network.factory is not None and network.path is not None
    factory = load(network.factory, network.path, digest)
    arguments = {
        "input_shape": tuple(input_shape),
        "outputs": outputs,
        "width": network.width,
        **network.kwargs,
    }
    return ModuleArchitecture(
        factory, arguments, tuple(input_shape), outputs, network.width, depth_label(network)
    )


def check_factory(preset: Preset, source: str, shape: tuple[tuple[int, ...], int]) -> None:
    """Build the preset's network and run one member on two zero samples of `shape` (input
    shape, outputs) on the CPU, before any worker starts; every problem is one PresetError
    naming network.factory."""
    input_shape, outputs = shape
    try:
        family = module_family(preset.network, input_shape, outputs, preset.module_digest)
        params = [p[None].to(torch.float32) for p in family.init(preset.seeds[0])]
        try:
            out = family.ensemble(params).predict(torch.zeros(2, *input_shape))
        except Exception as error:
            raise FactoryError(f"the module's forward failed: {one_line(error)}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 2, outputs):
            got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
            raise FactoryError(
                f"the module maps a batch (2, {_dims(input_shape)}) to {got}, not "
                f"(2, {outputs}): f_mu needs one value per output (data.outputs or classes)"
            )
        if not bool(torch.isfinite(out).all()):
            raise FactoryError("the module's initial output is not finite")
    except FactoryError as error:
        factory = preset.network.factory
        raise PresetError(f"{source}: key '{FACTORY_KEY}' ({factory}): {error}") from None


def _dims(shape: tuple[int, ...]) -> str:
    """'3, 32, 32' for (3, 32, 32)."""
    return ", ".join(str(d) for d in shape)
