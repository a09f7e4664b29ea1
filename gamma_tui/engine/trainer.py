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

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from gamma_tui.cache import Cache, CacheError, Progress
from gamma_tui.config import RunSpec
from gamma_tui.engine.centering import CenteredEnsemble, Newcomers
from gamma_tui.engine.diagnostics import seed_averaged
from gamma_tui.engine.shard import Shard, member_bytes, memory_budget
from gamma_tui.schedule import is_eval_step, next_boundary, reduce_losses
from gamma_tui.states import DIVERGED, DONE, RUNNING


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
    diagnostics: list[tuple[int, str, float | None]] = field(default_factory=list)

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
    cuda_graphs: bool = False
    """Replay the step as CUDA graphs (torch.compile's "reduce-overhead" mode), which removes
    the per-kernel launch cost that dominates small ensembles on a GPU. CUDA only: refused on
    any other device."""

    def __post_init__(self) -> None:
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, not {self.device}")

    @property
    def compile_mode(self) -> str | None:
        """torch.compile mode of the step, or None for eager code."""
        if self.cuda_graphs:
            return "reduce-overhead"
        return "default" if self.compile_step else None


class ShardTrainer:
    """Trains the runs of one shard held under a lease owned by `owner`."""

    def __init__(self, cache: Cache, owner: str, options: TrainerOptions) -> None:
        self.cache, self.owner, self.options = cache, owner, options
        self.stop_requested = False
        self.shard: Shard | None = None
        """The shard being trained (set by `train`)."""
        self.seconds = {"total": 0.0, "diagnostics": 0.0}
        """Wall time of the ensembles trained, and the part of it the [diagnostics] took."""
        if options.compile_mode is not None:
            import torch._dynamo

            torch._dynamo.config.suppress_errors = True

    def train(self, run_ids: list[str]) -> int:
        """Train every claimable run in `run_ids` to its target; returns how many it trained.

        A shard larger than the device's memory budget trains as consecutive ensembles.
        """
        members = self._restore(self.cache.claim(run_ids, self.owner))
        if not members:
            return 0
        spec = members[0].spec
        self.shard = shard = Shard.of(spec, self.options.device)
        per_member = member_bytes(shard.family, spec.batch_size, shard.dtype)
        size = max(1, int(memory_budget(self.options.device) // per_member))
        for first in range(0, len(members), size):
            if not self.stop_requested:
                self._train_ensemble(shard, members[first : first + size])
        return len(members)

    def _train_ensemble(self, shard: Shard, members: list[Member]) -> None:
        """Train members in lockstep, letting later-starting cohorts join when reached."""
        cohorts = sorted({m.start_step for m in members})
        active: list[Member] = []
        ensemble = CenteredEnsemble(
            shard.family,
            shard.optimizer,
            shard.loss,
            shard.dtype,
            self.options.device,
            shard.held_out,
            compile_mode=self.options.compile_mode,
        )
        started = time.perf_counter()
        step, last_commit = cohorts[0], time.monotonic()
        horizon = step  # the end of the current loss window
        while (active or cohorts) and not self.stop_requested:
            if cohorts and (not active or step == cohorts[0]):
                step = step if active else cohorts[0]
                cohort_start = cohorts.pop(0)
                joining = [m for m in members if m.start_step == cohort_start]
                ensemble.extend(self._newcomers(shard, joining))
                active += joining
            # syncs (so commits and checkpoints) land on recording-window boundaries: past the
            # curve cap a commit in mid-window would split the window, and where commits fall
            # depends on wall-clock time, so the curve would too
            if step >= horizon:
                sync = next_boundary(step + self.options.sync_every, active[0].spec.curve_cap)
                horizon = min([m.target_steps for m in active] + cohorts[:1] + [sync])
            losses, evals, measured = self._run_steps(ensemble, active, step, horizon)
            step += losses.shape[1]
            self._record(active, losses, step, evals)
            _record_diagnostics(active, active, measured)
            finished = [m for m in active if m.diverged_step is not None or step >= m.target_steps]
            if shard.held_out is not None and any(m.diverged_step is None for m in finished):
                self._record_evals(finished, active, [(step, *ensemble.evaluate())])
                if (cells := _cells(active, self.options.device)) is not None:
                    _record_diagnostics(finished, active, [(step, seed_averaged(ensemble, cells))])
            if shard.probe is not None and any(m.diverged_step is None for m in finished):
                _record_diagnostics(finished, active, [(step, self._measure(ensemble))])
            # a window cut short by a divergence commits only the diverged members; the rest
            # commit at the window's end, as if it had not been cut
            cut = step < horizon
            due = not cut and time.monotonic() - last_commit >= self.options.commit_seconds
            if finished or due:
                self._commit(ensemble, active, step, final=finished, only_final=cut)
                last_commit = time.monotonic()
            if finished:
                keep = [i for i, m in enumerate(active) if m not in finished]
                ensemble.select(keep)
                active = [active[i] for i in keep]
        if active:
            self._commit(ensemble, active, step, final=[], checkpoint=True)
        self.seconds["total"] += time.perf_counter() - started

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

    @staticmethod
    def _newcomers(shard: Shard, joining: list[Member]) -> Newcomers:
        """A cohort's parameters (checkpoint, or the seed's initial draw) and settings; the
        checkpoints are released from the members once read."""
        params, saved = [], []
        for member in joining:
            arrays = member.saved
            if arrays is None:
                params.append(shard.family.init(member.spec.seed))
                saved.append(None)
            else:
                count = sum(1 for name in arrays if name.startswith("p"))
                params.append([torch.from_numpy(arrays[f"p{i}"]) for i in range(count)])
                saved.append({k: torch.from_numpy(v) for k, v in arrays.items()})
            member.saved = None
        specs = [m.spec for m in joining]
        return Newcomers(
            params,
            saved,
            [s.gamma for s in specs],
            [s.eta for s in specs],
            [s.seed for s in specs],
        )

    # ---- the training loop ---------------------------------------------------------------

    def _run_steps(
        self, ensemble: CenteredEnsemble, active: list[Member], start: int, stop: int
    ) -> tuple[torch.Tensor, list[Evaluation], list[Diagnosis]]:
        """Train steps [start, stop): the (E, stop - start) losses, the held-out evaluations
        and the diagnostics made on the way, all still on the device.

        On the CPU, where reading a loss is no device sync, every step's losses are checked
        for divergence, and the window ends at the first divergent step (the losses returned
        are then shorter), so a diverged member stops costing compute at once; elsewhere
        divergence is found when the window's losses are read.
        """
        losses = torch.empty(
            len(active), stop - start, dtype=ensemble.dtype, device=self.options.device
        )
        evals, measured = [], []
        assert self.shard is not None
        probe, cells = self.shard.probe, _cells(active, self.options.device)
        watch = DivergenceWatch(active) if self.options.device.type == "cpu" else None
        for offset, step in enumerate(range(start, stop)):
            if ensemble.held_out is not None and is_eval_step(step):
                evals.append((step, *ensemble.evaluate()))
                if cells is not None:
                    measured.append((step, seed_averaged(ensemble, cells)))
            if probe is not None and is_eval_step(step):
                measured.append((step, self._measure(ensemble)))
            batch = self.shard.stream.batch(step)
            value = ensemble.step(batch.x, batch.target, step)
            losses[:, offset] = value
            if watch is not None and watch.diverged(value.numpy()):
                return losses[:, : offset + 1], evals, measured
        return losses, evals, measured

    def _measure(self, ensemble: CenteredEnsemble) -> dict[str, torch.Tensor]:
        """The probe's diagnostics of every member, timed into `seconds` (the device is
        synchronized around them, so the time is theirs, not the queued training's)."""
        assert self.shard is not None and self.shard.probe is not None
        started = _synchronized(self.options.device)
        values = self.shard.probe.measure(ensemble)
        self.seconds["diagnostics"] += _synchronized(self.options.device) - started
        return values

    def _record(
        self, active: list[Member], losses: torch.Tensor, stop: int, evals: list[Evaluation]
    ) -> None:
        """Move losses to the host, set initial losses and detect divergence."""
        host = losses.cpu().numpy()
        first = stop - host.shape[1]
        for member, row in zip(active, host, strict=True):
            if member.init_loss is None:
                member.init_loss = float(row[0])
            bad = first_divergence(row, divergence_limit(member, member.init_loss))
            if bad is not None:
                member.diverged_step = first + bad
                row = row[: bad + 1]
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
        self,
        ensemble: CenteredEnsemble,
        active: list[Member],
        step: int,
        final: list[Member],
        checkpoint: bool = False,
        only_final: bool = False,
    ) -> None:
        """Write every active member's new losses (and due checkpoints) in one transaction;
        with `only_final`, only those of the members in `final`."""
        updates = []
        for index, member in enumerate(active):
            done = member in final
            if only_final and not done:
                continue
            steps_done = member.pending_start + member.pending_count
            due = step - member.last_checkpoint >= self.options.checkpoint_every
            save = (done or due or checkpoint) and member.diverged_step is None
            status = RUNNING
            if done:
                status = DIVERGED if member.diverged_step is not None else DONE
            losses = np.concatenate(member.pending) if member.pending else np.zeros(0, np.float32)
            updates.append(
                Progress(
                    run_id=member.run_id,
                    steps_done=steps_done,
                    status=status,
                    chunks=reduce_losses(member.pending_start, losses, member.spec.curve_cap),
                    checkpoint=self._checkpoint(ensemble, index) if save else None,
                    init_loss=member.init_loss,
                    last_loss=float(losses[-1]) if len(losses) else None,
                    diverged_step=member.diverged_step,
                    evals=member.evals,
                    diagnostics=member.diagnostics,
                )
            )
            member.pending, member.pending_start, member.evals = [], steps_done, []
            member.diagnostics = []
            if save:
                member.last_checkpoint = step
        lost = self.cache.commit(self.owner, updates)
        if lost:
            raise LeaseLost(lost)

    @staticmethod
    def _checkpoint(ensemble: CenteredEnsemble, index: int) -> dict[str, np.ndarray]:
        """One member's parameters (p0, p1, ...) and optimizer state as named host arrays."""
        arrays = {f"p{i}": p[index].cpu().numpy() for i, p in enumerate(ensemble.params)}
        if ensemble.optimizer is not None:
            state = ensemble.optimizer.member_state(index)
            arrays.update({name: t.cpu().numpy() for name, t in state.items()})
        return arrays


def divergence_limit(member: Member, init_loss: float) -> float:
    """The loss above which `member` counts as diverged."""
    return member.spec.divergence_factor * max(init_loss, 1e-30)


def first_divergence(row: np.ndarray, limit: float) -> int | None:
    """Index of the first loss in `row` that is not finite or exceeds `limit`, or None."""
    bad = np.flatnonzero(~np.isfinite(row) | (row > limit))
    return int(bad[0]) if bad.size else None


class DivergenceWatch:
    """Checks one step's losses of the ensemble's rows for divergence, by the same test as
    `ShardTrainer._record` (`first_divergence`), so it never disagrees with the record."""

    def __init__(self, active: list[Member]) -> None:
        self.members = active
        self.limits = [
            None if m.init_loss is None else divergence_limit(m, m.init_loss) for m in active
        ]
        self._coarse: np.ndarray | None = None

    def diverged(self, values: np.ndarray) -> bool:
        """Whether any member's loss in `values` (E,) diverged; the first call also takes
        the initial losses of members that have none."""
        if self._coarse is None:
            self.limits = [
                divergence_limit(m, float(values[i])) if limit is None else limit
                for i, (m, limit) in enumerate(zip(self.members, self.limits, strict=True))
            ]
            self._coarse = 0.5 * np.array(self.limits, dtype=np.float64)
        # a cheap vector test first: the exact one only for losses near their limit
        near = ~np.isfinite(values) | (values.astype(np.float64) > self._coarse)
        return any(
            first_divergence(values[i : i + 1], self.limits[i]) is not None
            for i in np.flatnonzero(near)
        )


Evaluation = tuple[int, torch.Tensor, torch.Tensor | None]
"""A held-out evaluation of every member at one step: (step, losses (E,), accuracies (E,))."""

Diagnosis = tuple[int, dict[str, torch.Tensor]]
"""Every member's diagnostics at one step: (step, {name: values (E,)})."""


def _synchronized(device: torch.device) -> float:
    """perf_counter once the device finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter()


def _cells(active: list[Member], device: torch.device) -> torch.Tensor | None:
    """Each member's (γ, η) cell number (E,), or None when no cell has two seeds here (the
    seed average is over the seeds that train in this ensemble)."""
    keys = [(m.spec.gamma, m.spec.eta) for m in active]
    numbers = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    if len(numbers) == len(keys):
        return None
    return torch.tensor([numbers[key] for key in keys], dtype=torch.long, device=device)


def _record_diagnostics(
    members: list[Member], active: list[Member], measured: list[Diagnosis]
) -> None:
    """Append diagnostics to `members` (a subset of `active`, the ensemble's rows), up to each
    member's divergence; non-finite values are stored as missing."""
    rows = {id(member): row for row, member in enumerate(active)}
    for step, values in measured:
        host = {name: tensor.cpu().numpy() for name, tensor in values.items()}
        for member in members:
            if member.diverged_step is None or step <= member.diverged_step:
                for name, column in host.items():
                    value = float(column[rows[id(member)]])
                    member.diagnostics.append((step, name, value if np.isfinite(value) else None))


class LeaseLost(RuntimeError):
    """Another worker took over some of our runs (our lease had expired)."""
