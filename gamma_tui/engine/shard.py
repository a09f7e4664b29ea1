"""A shard as the engine sees it: which model family trains it, on which device, with which
data stream, held-out set, dtype and diagnostics probe, and how much memory a member needs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from gamma_tui.config import IMAGE_MODELS, NetworkConfig, RunSpec, depth_label, image_problem
from gamma_tui.engine.centering import HeldOut
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.data import FileStream, Stream, make_stream
from gamma_tui.engine.diagnostics import Probe
from gamma_tui.engine.family import Family
from gamma_tui.engine.functional import FunctionalArchitecture, MLPModule, ResNet18, ViT
from gamma_tui.engine.parameterization import Architecture

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, then Apple MPS, else CPU.

    On CUDA, TF32 is turned off for matmuls and convolutions (cuDNN allows it by default):
    its 10-bit mantissa would swamp the centered difference f_mu(θ) - f_mu(θ0) at small γ,
    and float32 must mean float32 on every device.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def model_family(
    network: NetworkConfig, stream: Stream, optimizer: str = "sgd", digest: str | None = None
) -> Family:
    """The family of `network` on the stream's inputs and outputs.

    MLPs and the chain take the hand-written fast path under SGD and the general (vmap +
    autograd) path under the other optimizers, which need raw gradients. Your own network
    (kind "module", `digest` its registered source digest) always takes the general path.
    """
    label = depth_label(network)
    if network.kind == "module":
        from gamma_tui.engine.module_family import module_family

        shape = stream.input_shape if isinstance(stream, FileStream) else (stream.input_dim,)
        return module_family(network, shape, stream.outputs, digest)
    if network.kind in IMAGE_MODELS:
        if not isinstance(stream, FileStream):
            raise ValueError(f"network.kind = '{network.kind}' trains on image datasets only")
        shape = stream.input_shape
        problem = image_problem(network, shape)
        if problem:
            raise ValueError(problem)
        image = (shape[0], shape[1], shape[2])
        classes = stream.outputs
        if network.kind == "cnn":
            return ConvArchitecture(image, network.width, classes, network.bias)
        if network.kind == "resnet18":
            return FunctionalArchitecture(
                lambda: ResNet18(image[0], network.width, classes), image, network.width, label
            )
        return FunctionalArchitecture(
            lambda: ViT(image, network, classes), image, network.width, label
        )
    arch = Architecture.of(network, stream.input_dim, stream.outputs)
    return arch if optimizer == "sgd" else functional_mlp(arch)


def functional_mlp(arch: Architecture) -> FunctionalArchitecture:
    """The MLP `arch` on the general path: same parameters, same initial draws."""
    return FunctionalArchitecture(
        lambda: MLPModule(arch.widths, arch.bias, arch.activation),
        (arch.widths[0],),
        arch.width,
        arch.depth_label,
        ones_init=arch.init_kind == "ones",
    )


def member_bytes(arch: Family, batch_size: int, dtype: torch.dtype) -> int:
    """Device memory one ensemble member needs: parameters, gradients and activations."""
    itemsize = torch.finfo(dtype).bits // 8
    activations = arch.activation_elements(batch_size) * 4  # values, grads, temporaries
    return itemsize * (3 * arch.parameter_count() + activations)


def memory_budget(device: torch.device) -> float:
    """Bytes the ensemble may use: half the free GPU memory, or a quarter of RAM (<= 8 GiB)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return 0.5 * free
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 * 2**30
    return min(0.25 * ram, 8 * 2**30)


@dataclass(frozen=True)
class Shard:
    """What every ensemble of one shard shares: family, data, dtype, optimizer and loss."""

    family: Family
    stream: Stream
    held_out: HeldOut | None
    dtype: torch.dtype
    optimizer: str
    loss: str
    probe: Probe | None = None
    """The [diagnostics] measured at the evaluation steps, if any."""

    @classmethod
    def of(cls, spec: RunSpec, device: torch.device) -> Shard:
        """The shard of runs like `spec` on `device`."""
        dtype = DTYPES[spec.dtype]
        stream = make_stream(
            spec.data,
            spec.batch_size,
            spec.loss,
            dtype,
            device,
            flatten=spec.network.kind not in (*IMAGE_MODELS, "module"),
        )
        test = stream.test_set()
        held_out = None if test is None else HeldOut.of(test, spec.batch_size)
        family = model_family(spec.network, stream, spec.optimizer, spec.module_digest)
        probe = Probe.of(spec.diagnostics, family, stream)
        return cls(family, stream, held_out, dtype, spec.optimizer, spec.loss, probe)
