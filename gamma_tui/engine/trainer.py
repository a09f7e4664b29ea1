"""The shard trainer: all runs of a shard train as one batched ensemble and report to the cache.

A shard is a set of runs with one architecture, data stream and dtype (equal `shard_key`).
The trainer leases them, restores each from its last checkpoint (or the seed's init), and
steps them in lockstep on a shared batch. Runs that start later (resumed or extended at
different steps) form cohorts that join the ensemble once it reaches their step. Members
that diverge or reach their target leave the ensemble, so they stop costing compute.
Losses stay on the device and are read every `sync_every` steps, the only host sync.
With a held-out test set (data.test_size), every member is evaluated at steps 0, 1, 2, 5,
10, 20, 50, ... and at its last step; the values ride along with the losses.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gamma_tui.cache import (
    Cache,
    CacheError,
    Progress,
    is_eval_step,
    next_boundary,
    reduce_losses,
)
from gamma_tui.config import IMAGE_MODELS, NetworkConfig, RunSpec, depth_label, image_problem
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.data import FileStream, Stream, TestSet, make_stream
from gamma_tui.engine.functional import FunctionalArchitecture, MLPModule, ResNet18, ViT
from gamma_tui.engine.optimizers import EnsembleOptimizer, step_sizes
from gamma_tui.engine.parameterization import Architecture, loss_and_grad

EVAL_CHUNK = 1000
"""Held-out samples per forward at most (the reference's test batch), and at most 4 training
batches, which the memory plan already allows for. The test set is cut into equal chunks (sizes
differ by at most one), so BatchNorm models, which normalize each chunk by its statistics, never
see a tiny remainder."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(eq=False)  # identity semantics: members are compared with `in`
class Member:
    """One run inside the ensemble: identity, targets and losses not yet committed."""

    spec: RunSpec
    run_id: str
    start_step: int
    target_steps: int
    init_loss: float | None
    pending_start: int = 0
    pending: list[np.ndarray] = field(default_factory=list)
    last_checkpoint: int = 0
    diverged_step: int | None = None
    saved: dict[str, np.ndarray] | None = None
    evals: list[tuple[int, float | None, float | None]] = field(default_factory=list)

    @property
    def pending_count(self) -> int:
        """Losses recorded but not committed."""
        return sum(len(p) for p in self.pending)


@dataclass(frozen=True)
class TrainerOptions:
    """Worker-side knobs that never change results."""

    device: torch.device
    checkpoint_every: int = 250
    commit_seconds: float = 2.0
    sync_every: int = 32
    compile_step: bool = False
    """torch.compile the step (forward, loss, backward and, for SGD, the update). Dynamo falls
    back to eager code wherever it cannot compile (suppress_errors), so a run never fails for
    it; compiled kernels may round differently from eager ones, like another device would."""


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


Family = Architecture | ConvArchitecture | FunctionalArchitecture
"""A model family: shapes, initialisation and the ensemble class of one network kind."""


def model_family(network: NetworkConfig, stream: Stream, optimizer: str = "sgd") -> Family:
    """The family of `network` on the stream's inputs and outputs.

    MLPs and the chain take the hand-written fast path under SGD and the general (vmap +
    autograd) path under the other optimizers, which need raw gradients.
    """
    label = depth_label(network)
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


class ShardTrainer:
    """Trains the runs of one shard held under a lease owned by `owner`."""

    def __init__(self, cache: Cache, owner: str, options: TrainerOptions) -> None:
        self.cache, self.owner, self.options = cache, owner, options
        self.stop_requested = False
        self._step = self._train_step
        if options.compile_step:
            import torch._dynamo

            torch._dynamo.config.suppress_errors = True
            self._step = torch.compile(self._train_step, dynamic=None)

    def train(self, run_ids: list[str]) -> int:
        """Train every claimable run in `run_ids` to its target; returns how many it trained.

        A shard larger than the device's memory budget trains as consecutive ensembles.
        """
        members = self._restore(self.cache.claim(run_ids, self.owner))
        if not members:
            return 0
        spec = members[0].spec
        self.dtype = DTYPES[spec.dtype]
        self.optimizer_kind, self.loss_kind = spec.optimizer, spec.loss
        self.stream = make_stream(
            spec.data,
            spec.batch_size,
            spec.loss,
            self.dtype,
            self.options.device,
            flatten=spec.network.kind not in IMAGE_MODELS,
        )
        self.test: TestSet | None = self.stream.test_set()
        if self.test is not None:
            size = self.test.x.shape[0]
            chunks = -(-size // min(EVAL_CHUNK, 4 * spec.batch_size))
            self.test_chunks = [
                (int(c[0]), int(c[-1]) + 1) for c in torch.arange(size).tensor_split(chunks)
            ]
        self.arch = model_family(spec.network, self.stream, spec.optimizer)
        per_member = member_bytes(self.arch, spec.batch_size, self.dtype)
        size = max(1, int(memory_budget(self.options.device) // per_member))
        for first in range(0, len(members), size):
            if not self.stop_requested:
                self._train_ensemble(members[first : first + size])
        return len(members)

    def _train_ensemble(self, members: list[Member]) -> None:
        """Train members in lockstep, letting later-starting cohorts join when reached."""
        cohorts = sorted({m.start_step for m in members})
        active: list[Member] = []
        self.model: Any = None
        self.optimizer: EnsembleOptimizer | None = None
        step, last_commit = cohorts[0], time.monotonic()
        while (active or cohorts) and not self.stop_requested:
            if cohorts and (not active or step == cohorts[0]):
                step = step if active else cohorts[0]
                cohort_start = cohorts.pop(0)
                joining = [m for m in members if m.start_step == cohort_start]
                self._join(active, joining)
                active += joining
            model = self.model
            assert model is not None
            # syncs (so commits and checkpoints) land on recording-window boundaries: past the
            # curve cap a commit in mid-window would split the window, and where commits fall
            # depends on wall-clock time, so the curve would too
            sync = next_boundary(step + self.options.sync_every, active[0].spec.curve_cap)
            horizon = min([m.target_steps for m in active] + cohorts[:1] + [sync])
            losses, evals = self._run_steps(model, active, step, horizon)
            step = horizon
            self._record(active, losses, step, evals)
            finished = [m for m in active if m.diverged_step is not None or step >= m.target_steps]
            if self.test is not None and any(m.diverged_step is None for m in finished):
                self._record_evals(finished, active, [(step, *self._evaluate(model))])
            due = time.monotonic() - last_commit >= self.options.commit_seconds
            if finished or due:
                self._commit(active, step, final=finished)
                last_commit = time.monotonic()
            if finished:
                keep = [i for i, m in enumerate(active) if m not in finished]
                index = torch.tensor(keep, dtype=torch.long, device=self.options.device)
                model.select(index)
                if self.optimizer is not None:
                    self.optimizer.select(index)
                self._centering_select(keep)
                active = [active[i] for i in keep]
        if active:
            self._commit(active, step, final=[], checkpoint=True)

    # ---- setup ---------------------------------------------------------------------------

    def _restore(self, run_ids: list[str]) -> list[Member]:
        """Members for the claimed runs, each at its last checkpoint (or step 0)."""
        infos = {info.run_id: info for info in self.cache.runs(run_ids=run_ids)}
        members = []
        for run_id, spec_dict in self.cache.specs(run_ids).items():
            info = infos[run_id]
            try:
                saved = self.cache.checkpoint(run_id)
            except CacheError as error:  # retrain from step 0 rather than fail forever
                print(f"{error}; restarting the run from step 0", file=sys.stderr, flush=True)
                saved = None
            start = saved[0] if saved else 0
            if start != info.steps_done:
                self.cache.rewind(run_id, start)
            members.append(
                Member(
                    RunSpec.model_validate(spec_dict),
                    run_id,
                    start,
                    info.steps_target,
                    info.init_loss if start else None,
                    pending_start=start,
                    last_checkpoint=start,
                    saved=saved[1] if saved else None,
                )
            )
        return members

    def _member_params(self, member: Member) -> list[torch.Tensor]:
        """A member's parameters from its checkpoint, or its seed's initial draw."""
        if member.saved is not None:
            count = sum(1 for name in member.saved if name.startswith("p"))
            return [torch.from_numpy(member.saved[f"p{i}"]) for i in range(count)]
        return self.arch.init(member.spec.seed)

    def _stack(self, tensors: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Stack per-member parameter lists into ensemble tensors on the device."""
        return [
            torch.stack(group).to(device=self.options.device, dtype=self.dtype).contiguous()
            for group in zip(*tensors, strict=True)
        ]

    def _join(self, active: list[Member], joining: list[Member]) -> None:
        """Add a cohort to the ensemble and rebuild the per-member vectors."""
        newcomers = self.arch.ensemble(self._stack([self._member_params(m) for m in joining]))
        state = None
        if self.optimizer_kind != "sgd":
            saved = [
                None if m.saved is None else {k: torch.from_numpy(v) for k, v in m.saved.items()}
                for m in joining
            ]
            state = EnsembleOptimizer.restore(self.optimizer_kind, newcomers.params, saved)
        for member in joining:
            member.saved = None
        if self.model is None:
            self.model, self.optimizer = newcomers, state
        else:
            self.model.extend(newcomers)
            if self.optimizer is not None and state is not None:
                self.optimizer.extend(state)
        self._set_vectors(active + joining)

    def _set_vectors(self, members: list[Member]) -> None:
        """Per-member γ, step size and centering (frozen init per distinct seed)."""
        device = self.options.device
        self.gamma = torch.tensor([m.spec.gamma for m in members], dtype=self.dtype, device=device)
        etas = [m.spec.eta for m in members]
        self.step_size = torch.tensor(
            step_sizes(self.optimizer_kind, etas, self.arch.width), dtype=self.dtype, device=device
        )
        self.unit_rate = torch.ones_like(self.step_size)
        seeds = sorted({m.spec.seed for m in members})
        self.frozen = self.arch.ensemble(self._stack([self.arch.init(s) for s in seeds]))
        self.seed_index = torch.tensor([seeds.index(m.spec.seed) for m in members], device=device)
        if self.test is not None:  # the frozen outputs on the test set, chunk by chunk
            with torch.no_grad():
                self.test_f0 = torch.cat(
                    [self.frozen.predict(self.test.x[a:b]) for a, b in self.test_chunks], dim=1
                )

    def _centering_select(self, keep: list[int]) -> None:
        """Compact the per-member vectors after members left."""
        index = torch.tensor(keep, dtype=torch.long, device=self.options.device)
        self.gamma = self.gamma.index_select(0, index)
        self.step_size = self.step_size.index_select(0, index)
        self.unit_rate = self.unit_rate.index_select(0, index)
        self.seed_index = self.seed_index.index_select(0, index)

    # ---- the training loop ---------------------------------------------------------------

    def _run_steps(
        self, model: Any, active: list[Member], start: int, stop: int
    ) -> tuple[torch.Tensor, list[Evaluation]]:
        """Train steps [start, stop): the (E, stop - start) losses and the held-out
        evaluations made on the way, all still on the device."""
        losses = torch.empty(
            len(active), stop - start, dtype=self.dtype, device=self.options.device
        )
        evals = []
        for offset, step in enumerate(range(start, stop)):
            if self.test is not None and is_eval_step(step):
                evals.append((step, *self._evaluate(model)))
            batch = self.stream.batch(step)
            value, grads = self._step(model, batch.x, batch.target)
            losses[:, offset] = value
            if self.optimizer is not None:
                with torch.no_grad():
                    self.optimizer.step(model.params, grads, self.step_size, step)
        return losses, evals

    def _train_step(
        self, model: Any, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One step's losses (E,); SGD moves the parameters here, other optimizers get the
        gradients back (their update needs the step count, kept out of compiled code)."""
        f_mu, pre = model.forward(x)
        with torch.no_grad():  # autograd models: only the members' forward is a graph
            f_mu0 = self.frozen.predict(x).index_select(0, self.seed_index)
            # SGD: the step size rides in the output gradient; other optimizers take it later
            rate = self.step_size if self.optimizer is None else self.unit_rate
            value, grad = loss_and_grad(f_mu, f_mu0, self.gamma, rate, target, self.loss_kind)
        if self.optimizer is None:
            model.sgd_step(x, pre, grad)
            return value, []
        return value, model.gradients(x, pre, grad)

    def _evaluate(self, model: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every member's held-out loss (E,) and accuracy (E,) (None without classes)."""
        test = self.test
        assert test is not None
        size = test.x.shape[0]
        # sums in the run's dtype: float64 would not exist on Apple MPS
        total = torch.zeros(model.size, dtype=self.dtype, device=self.options.device)
        correct = torch.zeros_like(total)
        inv_gamma = (1.0 / self.gamma)[:, None, None]
        with torch.no_grad():
            for first, last in self.test_chunks:
                f0 = self.test_f0[:, first:last].index_select(0, self.seed_index)
                f = (model.predict(test.x[first:last]) - f0) * inv_gamma
                total += centered_loss_sum(f, test.target[first:last], self.loss_kind)
                if test.classes is not None:
                    hits = f.argmax(dim=2) == test.classes[first:last]
                    correct += hits.sum(dim=1)
        return total / size, None if test.classes is None else correct / size

    def _record(
        self, active: list[Member], losses: torch.Tensor, stop: int, evals: list[Evaluation]
    ) -> None:
        """Move losses to the host, set initial losses and detect divergence."""
        host = losses.cpu().numpy()
        first = stop - host.shape[1]
        for member, row in zip(active, host, strict=True):
            if member.init_loss is None:
                member.init_loss = float(row[0])
            limit = member.spec.divergence_factor * max(member.init_loss, 1e-30)
            bad = np.flatnonzero(~np.isfinite(row) | (row > limit))
            if bad.size:
                member.diverged_step = first + int(bad[0])
                row = row[: bad[0] + 1]
            member.pending.append(row.astype(np.float32))
        self._record_evals(active, active, evals)

    def _record_evals(
        self, members: list[Member], active: list[Member], evals: list[Evaluation]
    ) -> None:
        """Append evaluations to `members` (a subset of `active`, the ensemble's rows), up to
        each member's divergence."""
        rows = {id(member): row for row, member in enumerate(active)}
        for step, loss, accuracy in evals:
            values = loss.cpu().numpy()
            hits = None if accuracy is None else accuracy.cpu().numpy()
            for member in members:
                row = rows[id(member)]
                if member.diverged_step is None or step <= member.diverged_step:
                    hit = None if hits is None else float(hits[row])
                    value = float(values[row])  # NaN/inf (a diverging run) are stored as NULL
                    member.evals.append((step, value if np.isfinite(value) else None, hit))

    def _commit(
        self, active: list[Member], step: int, final: list[Member], checkpoint: bool = False
    ) -> None:
        """Write every active member's new losses (and due checkpoints) in one transaction."""
        updates = []
        for index, member in enumerate(active):
            done = member in final
            steps_done = member.pending_start + member.pending_count
            due = step - member.last_checkpoint >= self.options.checkpoint_every
            save = (done or due or checkpoint) and member.diverged_step is None
            status = "running"
            if done:
                status = "diverged" if member.diverged_step is not None else "done"
            losses = np.concatenate(member.pending) if member.pending else np.zeros(0, np.float32)
            updates.append(
                Progress(
                    run_id=member.run_id,
                    steps_done=steps_done,
                    status=status,
                    chunks=reduce_losses(member.pending_start, losses, member.spec.curve_cap),
                    checkpoint=self._checkpoint(index) if save else None,
                    init_loss=member.init_loss,
                    last_loss=float(losses[-1]) if len(losses) else None,
                    diverged_step=member.diverged_step,
                    evals=member.evals,
                )
            )
            member.pending, member.pending_start, member.evals = [], steps_done, []
            if save:
                member.last_checkpoint = step
        lost = self.cache.commit(self.owner, updates)
        if lost:
            raise LeaseLost(lost)

    def _checkpoint(self, index: int) -> dict[str, np.ndarray]:
        """One member's parameters (p0, p1, ...) and optimizer state as named host arrays."""
        assert self.model is not None
        arrays = {f"p{i}": p[index].cpu().numpy() for i, p in enumerate(self.model.params)}
        if self.optimizer is not None:
            state = self.optimizer.member_state(index)
            arrays.update({name: t.cpu().numpy() for name, t in state.items()})
        return arrays


Evaluation = tuple[int, torch.Tensor, torch.Tensor | None]
"""A held-out evaluation of every member at one step: (step, losses (E,), accuracies (E,))."""


def centered_loss_sum(f: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-member loss (E,) summed over the samples of f (E, T, C): MSE averaged over outputs,
    or cross-entropy; divide by T for the mean the training loss reports."""
    if loss == "mse":
        return (f - target).square().mean(dim=2).sum(dim=1)
    log_probs = torch.log_softmax(f, dim=2)
    classes = target.view(1, -1, 1).expand(f.shape[0], -1, 1)
    return -log_probs.gather(2, classes).sum(dim=(1, 2))


class LeaseLost(RuntimeError):
    """Another worker took over some of our runs (our lease had expired)."""
