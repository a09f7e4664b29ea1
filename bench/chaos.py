"""Chaos test: SIGKILL training processes at random moments, rerun until done, compare.

    python bench/chaos.py [--kills 20] [--steps 30000] [--workers 2] [--seed 0] [--keep DIR]

A sweep (presets/smoke.toml with more steps and `train.checkpoint_every` small) trains into a
fresh cache in rounds. Each round either starts `python -m gamma_tui run ...` as a user does
and kills one of its workers, the whole process group (driver and workers) or the driver
alone (its orphaned workers a moment later), or starts `python -m gamma_tui.engine` workers
directly with a fast commit cadence (so kills often land inside SQLite commits) and kills
one or both. The moment is drawn uniformly from the start of the round, so kills land in
start-up, in training, in commits and in checkpoint writes; in half the kills it is drawn
from the moment the worker first holds runs instead (within a second), so that kills land
in training on a machine where start-up alone outlasts `--max-delay`. Rounds repeat until at least
`--kills` workers were killed; if the sweep finishes first, `train.steps` grows and the
chaos continues on the extensions. A last `gamma-tui run` without kills must finish the
sweep (exit 0), and one more must train nothing.

Then the cache is checked (`compare`) against an uninterrupted run of the final preset in a
fresh cache (the reference, same worker count) and a second one on one worker (the floor:
other ensembles, so other BLAS shapes; CPU, same seeds). Exact, whatever the rounding: the
same runs, every one done or diverged (lost: 0), no duplicated or missing curve point (raw
chunks contiguous, steps 0..steps_done-1 below the curve cap), the same steps done and
checkpoint steps (mismatches: 0). Status and divergence step: exact unless the floor moved
them too. Curves and checkpoints: within float32 rounding (deviations: 0), point by point
max(TOLERANCE, FLOOR_FACTOR x the floor's running deviation); where composition changes no
bit (the floor is zero, as on the development machine) that leaves TOLERANCE, and the report
counts the runs that are bitwise the reference. Worker logs must not mention "database is
locked" and hold no traceback.

Leases: a killed worker keeps its lease for GAMMA_TUI_LEASE_SECONDS (120 s by default), after
which any worker may take its runs. To keep rounds short, this script sets the knob to
`--lease-seconds` (30) for every process it starts, and between rounds, when every process
it started has exited, it expires the leases whose holder process is dead (same host, pid
gone): what a lease expiry would do after the TTL, only sooner. `--no-expire` relies on the
TTL alone (set `--lease-seconds` low, e.g. 5).

Importable: `chaos(...)` returns a `ChaosReport`; tests/test_reliability.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "presets" / "smoke.toml"
FINAL = ("done", "diverged")


@dataclass
class ChaosReport:
    """What the chaos run did and what the verification found."""

    worker_kills: int = 0
    driver_kills: int = 0
    kills_mid_training: int = 0
    rounds: int = 0
    extensions: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    expected_runs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    comparison: Comparison | None = None
    lock_errors: int = 0
    log_tracebacks: int = 0
    final_exit: int | None = None
    rerun_trained: bool = False
    integrity: str = ""
    steps: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        """Every SIGKILL delivered to a live gamma-tui process."""
        return self.worker_kills + self.driver_kills

    @property
    def ok(self) -> bool:
        """No lost, duplicated or mismatched run, and the sweep finished cleanly."""
        return (
            not self.problems
            and self.comparison is not None
            and self.comparison.ok
            and self.lost == self.duplicated == self.lock_errors == self.log_tracebacks == 0
            and self.final_exit == 0
            and not self.rerun_trained
            and self.runs == self.expected_runs
            and self.integrity == "ok"
        )

    def summary(self) -> str:
        """The counts, one per line, for the console and the README."""
        modes = ", ".join(f"{mode} {n}" for mode, n in sorted(self.modes.items()))
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()))
        return "\n".join(
            [
                f"kills: {self.kills} (workers {self.worker_kills}, drivers "
                f"{self.driver_kills}; {self.kills_mid_training} workers held runs when killed)",
                f"rounds: {self.rounds} ({modes}); extensions: {self.extensions}; "
                f"final steps: {self.steps}",
                f"runs: {self.runs} of {self.expected_runs} ({states})",
                f"lost: {self.lost}",
                f"duplicated: {self.duplicated}",
                *(self.comparison.summary().splitlines()[1:] if self.comparison else []),
                f"lock errors: {self.lock_errors}; tracebacks in worker logs: "
                f"{self.log_tracebacks}; integrity: {self.integrity}",
                f"final run exit: {self.final_exit}; rerun trained again: {self.rerun_trained}",
                f"seconds: {self.seconds:.1f}",
            ]
            + [f"problem: {p}" for p in self.problems]
        )


# ---- processes -------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid` (from /proc/PID/task/*/children)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
            except (FileNotFoundError, ValueError):
                continue
            found += children
            stack += children
    return [p for p in found if alive(p)]


def is_engine(pid: int) -> bool:
    """Whether `pid` runs `python -m gamma_tui.engine`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"gamma_tui.engine" in handle.read()
    except FileNotFoundError:
        return False


def kill(pids: list[int]) -> list[int]:
    """SIGKILL each live pid; returns those that were alive."""
    hit = []
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                hit.append(pid)
            except ProcessLookupError:
                pass
    return hit


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Wait until none of `pids` is alive."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- the cache, read directly (no gamma_tui import, so no torch in this process) -------


def connect(cache: Path) -> sqlite3.Connection:
    """A plain SQLite connection to the run cache."""
    db = sqlite3.connect(cache / "cache.sqlite", timeout=60.0, isolation_level=None)
    db.execute("PRAGMA busy_timeout=60000")
    return db


def holds_runs(cache: Path, pid: int) -> bool:
    """Whether the worker `pid` holds leases (it claimed runs: it is training)."""
    try:
        with closing(connect(cache)) as db, db:
            row = db.execute(
                "SELECT COUNT(*) FROM runs WHERE lease_owner LIKE ?", (f"%:{pid}:%",)
            ).fetchone()
        return bool(row[0])
    except sqlite3.Error:
        return False


def expire_dead_leases(cache: Path) -> int:
    """Expire leases held by dead processes of this host (what the TTL would do, sooner)."""
    host = socket.gethostname()
    db = connect(cache)
    try:
        owners = [o for (o,) in db.execute("SELECT DISTINCT lease_owner FROM runs") if o]
        dead = []
        for owner in owners:
            owner_host, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if owner_host == host and pid.isdigit() and not alive(int(pid)):
                dead.append(owner)
        for owner in dead:
            db.execute("UPDATE runs SET lease_expires=0 WHERE lease_owner=?", (owner,))
        return len(dead)
    finally:
        db.close()


def open_runs(cache: Path, sweep: str) -> list[tuple[str, str]]:
    """(run_id, shard_key) of the sweep's runs not yet done or diverged."""
    with closing(connect(cache)) as db, db:
        return list(
            db.execute(
                "SELECT r.run_id, r.shard_key FROM runs r JOIN sweep_runs s USING (run_id)"
                " WHERE s.sweep=? AND r.status NOT IN ('done','diverged','failed','skipped')"
                " ORDER BY r.gamma, r.eta, r.seed",
                (sweep,),
            )
        )


# ---- the chaos ---------------------------------------------------------------------------


@dataclass
class Setup:
    """Fixed inputs of one chaos run."""

    preset: Path
    sets: list[str]
    workers: int
    checkpoint_every: int
    env: dict[str, str]
    log: object
    max_delay: float = 6.0

    def run_command(self, cache: Path, steps: int, workers: int | None = None) -> list[str]:
        """`python -m gamma_tui run PRESET ...` for `steps` steps on `workers` (or the
        setup's) workers."""
        command = [sys.executable, "-m", "gamma_tui", "run", str(self.preset), "-q"]
        for item in [*self.sets, f"train.steps={steps}"]:
            command += ["--set", item]
        command += [
            "--cache",
            str(cache),
            "--device",
            "cpu",
            "--workers",
            str(workers or self.workers),
        ]
        return command + ["--yes"] if self._has_yes() else command

    def _has_yes(self) -> bool:
        if not hasattr(self, "_yes"):
            done = subprocess.run(
                [sys.executable, "-m", "gamma_tui", "run", "--help"],
                capture_output=True,
                text=True,
                env=self.env,
                cwd=ROOT,
            )
            self._yes = "--yes" in done.stdout
        return self._yes

    def say(self, text: str) -> None:
        """A progress line on the log stream."""
        print(text, file=self.log, flush=True)  # type: ignore[call-overload]


def driver_round(
    setup: Setup, cache: Path, steps: int, rng: random.Random, report: ChaosReport
) -> int | None:
    """Start `gamma-tui run`, kill at a random moment; returns its exit code if it finished."""
    mode = rng.choices(["worker", "group", "driver"], weights=[5, 3, 2])[0]
    driver = subprocess.Popen(
        setup.run_command(cache, steps),
        cwd=ROOT,
        env=setup.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # half the rounds kill a moment after a worker holds runs: on a slow or loaded machine
    # start-up (importing torch) can outlast max_delay, and no kill would land in training
    training = rng.random() < 0.5
    delay = rng.uniform(0.0, setup.max_delay)
    deadline = time.monotonic() + delay
    engines: list[int] = []
    while time.monotonic() < deadline or not engines or training:
        if driver.poll() is not None:  # finished before the kill
            stderr = driver.stderr.read().decode(errors="replace") if driver.stderr else ""
            if driver.returncode != 0:
                report.problems.append(f"driver exited {driver.returncode}: {stderr[-300:]}")
            return driver.returncode
        engines = [p for p in descendants(driver.pid) if is_engine(p)]
        if training and any(holds_runs(cache, p) for p in engines):
            training = False
            delay = rng.uniform(0.0, 1.0)
            deadline = time.monotonic() + delay
        time.sleep(0.02)
    engines = [p for p in descendants(driver.pid) if is_engine(p)]
    report.modes[mode] += 1
    holding = {p for p in engines if holds_runs(cache, p)}
    if mode == "worker":
        hit = kill([rng.choice(engines)])
    elif mode == "group":
        hit = kill([driver.pid, *engines])
        report.driver_kills += driver.pid in hit
        hit = [p for p in hit if p != driver.pid]
    else:  # the driver dies (a lost SSH session); its workers go on, then die too
        report.driver_kills += len(kill([driver.pid]))
        time.sleep(rng.uniform(0.0, 2.5))
        hit = kill(engines)
    report.worker_kills += len(hit)
    report.kills_mid_training += len(holding & set(hit))
    setup.say(f"  round {report.rounds}: {mode} after {delay:.2f}s, killed {len(hit)} worker(s)")
    try:
        driver.wait(timeout=300)
    except subprocess.TimeoutExpired:
        kill([driver.pid, *descendants(driver.pid)])
        report.problems.append("driver did not exit after its worker was killed")
    wait_gone(engines, 300)
    if driver.stderr:
        driver.stderr.close()
    return None


def direct_round(
    setup: Setup, cache: Path, sweep: str, rng: random.Random, report: ChaosReport
) -> None:
    """Start engine workers directly (fast commits), kill one or both at random moments."""
    pending = open_runs(cache, sweep)
    if not pending:
        return
    groups: dict[str, list[str]] = {}
    for run_id, key in pending:
        groups.setdefault(key, []).append(run_id)
    shards = []
    for ids in groups.values():
        half = -(-len(ids) // 2)
        shards += [ids[:half], ids[half:]] if len(ids) > 1 else [ids]
    shards = [s for s in shards if s]
    log_dir = cache / "logs"
    log_dir.mkdir(exist_ok=True)
    workers = []
    for index in range(min(setup.workers, len(shards))):
        command = [sys.executable, "-m", "gamma_tui.engine", "--cache", str(cache)]
        command += ["--device", "cpu", "--threads", "1", "--commit-seconds", "0.05"]
        command += ["--checkpoint-every", str(setup.checkpoint_every)]
        for shard in shards[index :: setup.workers]:
            command += ["--shard", ",".join(shard)]
        log = log_dir / f"chaos-{report.rounds}-{index}.log"
        with log.open("wb") as handle:
            workers.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=setup.env, stdout=handle, stderr=subprocess.STDOUT
                )
            )
    report.modes["direct"] += 1
    victims = rng.sample(workers, k=rng.choice([1, len(workers)]))
    started = time.monotonic()
    moments = sorted(rng.uniform(0.0, setup.max_delay - 1.0) for _ in victims)
    for victim, moment in zip(victims, moments, strict=True):
        time.sleep(max(0.0, started + moment - time.monotonic()))
        if rng.random() < 0.5:  # a moment after it holds runs (see driver_round)
            waited = time.monotonic() + 120.0
            while not holds_runs(cache, victim.pid) and victim.poll() is None:
                if time.monotonic() > waited:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.0))
        holding = holds_runs(cache, victim.pid)
        hit = kill([victim.pid])
        report.worker_kills += len(hit)
        report.kills_mid_training += bool(hit) and holding
        setup.say(
            f"  round {report.rounds}: direct after {moment:.2f}s, killed {len(hit)} worker(s)"
        )
    for worker in workers:
        code = worker.wait(timeout=300)
        if code not in (0, -signal.SIGKILL):
            report.problems.append(f"direct worker exited {code} (see {log_dir})")


def train_until_killed(
    setup: Setup,
    cache: Path,
    sweep: str,
    kills: int,
    steps: int,
    grow: int,
    rng: random.Random,
    report: ChaosReport,
    max_rounds: int,
    expire: bool,
) -> int:
    """Run kill rounds until `kills` workers died; returns the final steps target."""
    registered = False
    while report.worker_kills < kills and report.rounds < max_rounds:
        report.rounds += 1
        if registered and rng.random() < 0.4:
            direct_round(setup, cache, sweep, rng, report)
        else:
            code = driver_round(setup, cache, steps, rng, report)
            registered = True
            if code == 0:  # the sweep finished before the kill: extend it and go on
                steps += grow
                report.extensions += 1
                setup.say(f"  sweep finished; extending to {steps} steps")
        if not open_runs(cache, sweep) and report.worker_kills < kills:
            steps += grow
            report.extensions += 1
            setup.say(f"  sweep finished; extending to {steps} steps")
        if expire:
            expire_dead_leases(cache)
    return steps


def chaos(
    kills: int = 20,
    steps: int = 30000,
    grow: int = 10000,
    workers: int = 2,
    seed: int = 0,
    checkpoint_every: int = 32,
    preset: Path = SMOKE,
    sets: list[str] | None = None,
    lease_seconds: float = 30.0,
    expire: bool = True,
    max_rounds: int = 200,
    max_delay: float = 6.0,
    workdir: Path | None = None,
    log: object = sys.stderr,
) -> ChaosReport:
    """Kill, rerun, verify; see the module docstring. Returns the report."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gamma-chaos-") as scratch:
        base = Path(workdir) if workdir else Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GAMMA_TUI_LEASE_SECONDS": str(lease_seconds), "COLUMNS": "120"}
        env.pop("GAMMA_TUI_CACHE", None)
        setup = Setup(
            Path(preset),
            [
                f"train.checkpoint_every={checkpoint_every}",
                "train.curve_cap=1000000",
                *(sets or []),
            ],
            workers,
            checkpoint_every,
            env,
            log,
            max_delay,
        )
        sweep = _sweep_name(setup)
        cache, reference = base / "chaos", base / "reference"
        rng = random.Random(seed)
        report = ChaosReport()
        setup.say(f"chaos: {kills} kills on {preset.name} ({steps} steps), cache {cache}")
        final_steps = train_until_killed(
            setup, cache, sweep, kills, steps, grow, rng, report, max_rounds, expire
        )
        report.steps = final_steps
        report.final_exit = _finish(setup, cache, final_steps, report)
        logs_before = len(list((cache / "logs").glob("*.log")))
        again = subprocess.run(
            setup.run_command(cache, final_steps), cwd=ROOT, env=env, capture_output=True
        )
        report.rerun_trained = (
            again.returncode != 0 or len(list((cache / "logs").glob("*.log"))) != logs_before
        )
        # the floor: the same sweep uninterrupted on one worker, so in other ensembles
        for name, count in (("reference", workers), ("floor", 1)):
            setup.say(f"{name}: an uninterrupted run on {count} worker(s) in a fresh cache")
            done = subprocess.run(
                setup.run_command(base / name, final_steps, count),
                cwd=ROOT,
                env=env,
                capture_output=True,
            )
            if done.returncode != 0:
                report.problems.append(f"{name} run exited {done.returncode}")
        verify(cache, reference, base / "floor", sweep, report)
        report.seconds = time.monotonic() - began
        return report


def _sweep_name(setup: Setup) -> str:
    """The sweep name the preset registers under (the runner's rule, read without torch)."""
    code = (
        "import sys, json; from gamma_tui.config import load_preset; "
        "p = load_preset(sys.argv[1], sys.argv[2:]); print(json.dumps([p.name, p.run_count()]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(setup.preset), *setup.sets],
        capture_output=True,
        text=True,
        env=setup.env,
        check=True,
        cwd=ROOT,
    )
    return str(json.loads(done.stdout)[0])


def _finish(setup: Setup, cache: Path, steps: int, report: ChaosReport) -> int:
    """`gamma-tui run` without kills until it exits 0 (it should at once); its exit code."""
    code = -1
    for attempt in range(3):
        done = subprocess.run(
            setup.run_command(cache, steps), cwd=ROOT, env=setup.env, capture_output=True
        )
        code = done.returncode
        if code == 0:
            if attempt:
                report.problems.append(f"the final run needed {attempt + 1} attempts")
            break
        setup.say(f"final run exited {code}: {done.stderr.decode(errors='replace')[-400:]}")
    return code


# ---- verification ------------------------------------------------------------------------


def _rows(cache: Path, sweep: str) -> dict[str, dict[str, object]]:
    with closing(connect(cache)) as db, db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT r.* FROM runs r JOIN sweep_runs s USING (run_id) WHERE s.sweep=?", (sweep,)
        ).fetchall()
    return {row["run_id"]: dict(row) for row in rows}


def _chunks(cache: Path) -> dict[str, list[tuple[int, int, bytes]]]:
    with closing(connect(cache)) as db, db:
        rows = db.execute(
            "SELECT run_id, start_step, window, data FROM curve_chunks ORDER BY run_id, start_step"
        )
        found: dict[str, list[tuple[int, int, bytes]]] = {}
        for run_id, start, window, data in rows:
            found.setdefault(run_id, []).append((start, window, bytes(data)))
    return found


def _checkpoints(cache: Path) -> dict[str, tuple[int, bytes]]:
    with closing(connect(cache)) as db, db:
        return {r: (s, bytes(d)) for r, s, d in db.execute("SELECT * FROM checkpoints")}


def _losses(parts: list[tuple[int, int, bytes]]) -> np.ndarray:
    """A run's raw curve (float32 losses in step order) from its chunks."""
    return np.frombuffer(b"".join(d for _, _, d in parts), dtype="<f4")


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _bitwise(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two checkpoints hold the same arrays bit for bit."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )


def relative_deviation(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|values - reference| / |reference| point by point (float64), over the common length.

    Two NaNs (or equal infinities) count as equal; a non-finite value against a finite
    one, or a point one side lacks, is an infinite deviation.
    """
    size = max(len(values), len(reference))
    a = np.full(size, np.nan)
    b = np.full(size, np.nan)
    a[: len(values)], b[: len(reference)] = values, reference
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        deviation = np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    deviation[same] = 0.0
    deviation[np.isnan(deviation)] = np.inf
    deviation[len(values) :] = deviation[len(reference) :] = np.inf
    return deviation


def _checkpoint_deviation(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest |a - b| of an array relative to that array's largest |b| (inf: other names)."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    tiny, worst = float(np.finfo(np.float32).tiny), 0.0
    for name, values in b.items():
        scale = max(float(np.max(np.abs(values), initial=0.0)), tiny)
        difference = np.max(np.abs(a[name].astype(np.float64) - values), initial=0.0)
        worst = max(worst, float(np.nan_to_num(difference, nan=np.inf)) / scale)
    return worst


@dataclass
class Comparison:
    """A sweep's cache checked against an uninterrupted reference and the composition floor.

    `floor` is another uninterrupted run of the same sweep with another composition (other
    worker count, so other ensemble sizes): how far float32 rounding alone moves each run.
    """

    runs: int = 0
    expected_runs: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    """Runs whose exact facts differ: status, steps done, curve points, checkpoint step."""
    deviations: int = 0
    """Runs whose curve or checkpoint leaves what rounding allows (`allowance`)."""
    bitwise: int = 0
    """Runs whose curve and checkpoint are bitwise the reference's."""
    floor_bitwise: int = 0
    floor_deviation: float = 0.0
    """Largest relative deviation of a floor curve point from the reference."""
    largest_deviation: float = 0.0
    """Largest relative deviation of a curve point of this cache from the reference."""
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, mismatched or deviating, and every run present."""
        return (
            self.lost == self.duplicated == self.mismatches == self.deviations == 0
            and self.runs == self.expected_runs > 0
        )

    def summary(self) -> str:
        """The counts, one per line."""
        return "\n".join(
            [
                f"runs: {self.runs} of {self.expected_runs}; lost: {self.lost}; "
                f"duplicated: {self.duplicated}",
                f"mismatches: {self.mismatches}; deviations: {self.deviations}",
                f"bitwise equal to the reference: {self.bitwise}/{self.expected_runs} runs "
                f"(floor: {self.floor_bitwise}/{self.expected_runs})",
                f"composition noise floor: {self.floor_deviation:.2e}; largest deviation "
                f"found: {self.largest_deviation:.2e}",
            ]
            + self.findings
        )


TOLERANCE = 1e-4
"""Relative deviation of a loss point (or checkpoint) always accepted as float32 rounding.

On the chaos preset a one-ulp change of every initial weight moves the losses by at most
1e-5 over the first 1000 steps and reaches 1e-4 only after 1000 to 13000 steps (runs near
the edge of stability amplify it, the others contract it), while a wrong resume (a lost or
repeated step, another batch, a stale checkpoint, another γ or η) moves them by 1e-3 or
more at once (tests/test_resume_faults.py)."""

FLOOR_FACTOR = 10.0
"""How much further than the floor a run may move: the floor's rounding is a different
draw from the resumed run's, and chaotic amplification spreads such draws by a factor of a
few (see `allowance`)."""


def allowance(floor: np.ndarray, size: int) -> np.ndarray:
    """Deviation allowed at each of `size` points, from the floor's deviation curve.

    max(TOLERANCE, FLOOR_FACTOR x the floor's running maximum): rounding differences only
    grow (chaos) or stay put (contraction), so once the floor has moved by d, the resumed
    run may have moved by about as much. Past the floor's last point its last value holds.
    """
    running = np.maximum.accumulate(floor) if len(floor) else np.zeros(1)
    padded = np.full(size, running[-1])
    padded[: min(size, len(running))] = running[:size]
    return np.maximum(TOLERANCE, FLOOR_FACTOR * padded)


def compare(cache: Path, reference: Path, floor: Path, sweep: str) -> Comparison:
    """Check `cache` against the uninterrupted `reference`, with `floor` as rounding's scale.

    Exact, whatever the rounding: the same runs, every one done or diverged, chunks
    contiguous from step 0 to steps_done (no lost, repeated or missing point), one point
    per step below the curve cap, the same steps done and checkpoint step. Rounding
    dependent (status, diverged step): exact unless the floor itself differs from the
    reference there. Curves and checkpoints: within `allowance` of the reference point by
    point, which on a machine where composition changes no bit (a floor of zero) still
    leaves only TOLERANCE.
    """
    found = Comparison()
    mine, theirs, base = _rows(cache, sweep), _rows(reference, sweep), _rows(floor, sweep)
    chunks, reference_chunks, floor_chunks = _chunks(cache), _chunks(reference), _chunks(floor)
    checkpoints = _checkpoints(cache)
    reference_checkpoints, floor_checkpoints = _checkpoints(reference), _checkpoints(floor)
    found.runs, found.expected_runs = len(mine), len(theirs)
    found.lost = sum(1 for r in theirs if r not in mine or mine[r]["status"] not in FINAL)
    for run_id, row in sorted(mine.items()):
        name = f"run {run_id} (gamma {row['gamma']}, eta {row['eta']}, seed {row['seed']})"
        spec = json.loads(str(row["spec_json"]))
        cap, done = int(spec["curve_cap"]), int(row["steps_done"])  # type: ignore[call-overload]
        parts = chunks.get(run_id, [])
        position, duplicated = 0, False
        for start, window, data in parts:  # contiguous, no overlap, no gap
            duplicated |= start != position
            position = start + window * (len(data) // 4)
        duplicated |= position != done
        if done <= cap:
            duplicated |= (
                any(w != 1 for _, w, _ in parts) or sum(len(d) // 4 for _, _, d in parts) != done
            )
        found.duplicated += duplicated
        other, beside = theirs.get(run_id), base.get(run_id)
        if other is None or beside is None:
            found.mismatches += 1
            found.findings.append(f"mismatch: {name} is not in the reference")
            continue
        loose = [k for k in ("status", "diverged_step") if beside[k] != other[k]]
        exact = [k for k in ("status", "steps_done", "diverged_step") if k not in loose]
        saved, expected = checkpoints.get(run_id), reference_checkpoints.get(run_id)
        differs = [k for k in exact if row[k] != other[k]]
        if (saved is None) != (expected is None) or (
            saved and expected and saved[0] != expected[0]
        ):
            differs.append("checkpoint step")
        mine_curve = _losses(parts)
        their_curve, floor_curve = (
            _losses(c.get(run_id, [])) for c in (reference_chunks, floor_chunks)
        )
        if not loose and len(mine_curve) != len(their_curve):
            differs.append("curve points")
        if differs:
            found.mismatches += 1
            found.findings.append(f"mismatch: {name}: {', '.join(differs)} differ")
        floor_deviation = relative_deviation(floor_curve, their_curve)
        deviation = relative_deviation(mine_curve, their_curve)
        if loose:  # rounding moved the divergence: compare up to the earlier one
            common = min(len(mine_curve), len(their_curve), len(floor_curve))
            deviation, floor_deviation = deviation[:common], floor_deviation[:common]
        found.floor_deviation = max(found.floor_deviation, float(floor_deviation.max(initial=0)))
        found.largest_deviation = max(found.largest_deviation, float(deviation.max(initial=0)))
        found.floor_bitwise += floor_curve.tobytes() == their_curve.tobytes()
        allowed = allowance(floor_deviation, len(deviation))
        beyond = np.flatnonzero(deviation > allowed)
        checkpoint_ok = True
        if saved and expected and saved[0] == expected[0]:
            floor_saved = floor_checkpoints.get(run_id)
            floor_gap = (
                _checkpoint_deviation(_arrays(floor_saved[1]), _arrays(expected[1]))
                if floor_saved and floor_saved[0] == expected[0]
                else float("inf")
            )
            gap = _checkpoint_deviation(_arrays(saved[1]), _arrays(expected[1]))
            checkpoint_ok = gap <= max(TOLERANCE, FLOOR_FACTOR * floor_gap)
            if not checkpoint_ok:
                found.findings.append(
                    f"deviation: {name}: checkpoint {gap:.2e} from the reference "
                    f"(floor {floor_gap:.2e})"
                )
        if beyond.size:
            at = int(beyond[0])
            found.findings.append(
                f"deviation: {name}: step {at} differs by {deviation[at]:.2e} (allowed "
                f"{allowed[at]:.2e}); {beyond.size} of {len(deviation)} points beyond"
            )
        found.deviations += bool(beyond.size) or not checkpoint_ok
        same_checkpoint = (saved is None and expected is None) or bool(
            saved and expected and _bitwise(_arrays(saved[1]), _arrays(expected[1]))
        )
        found.bitwise += (
            not differs and mine_curve.tobytes() == their_curve.tobytes() and same_checkpoint
        )
    return found


def verify(
    cache: Path, reference: Path, floor: Path, sweep: str, report: ChaosReport
) -> Comparison:
    """Compare the chaos cache with the references (`compare`); fill the report's counts."""
    with closing(connect(cache)) as db, db:
        report.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    report.states = Counter(str(row["status"]) for row in _rows(cache, sweep).values())
    found = compare(cache, reference, floor, sweep)
    report.comparison = found
    report.runs, report.expected_runs = found.runs, found.expected_runs
    report.lost, report.duplicated = found.lost, found.duplicated
    for log in (cache / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        report.lock_errors += text.count("database is locked")
        report.log_tracebacks += text.count("Traceback")
    return found


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit 1 when anything was lost or differs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="workers to SIGKILL, at least")
    parser.add_argument("--steps", type=int, default=30000, help="train.steps to start with")
    parser.add_argument("--grow", type=int, default=10000, help="steps added if it finishes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument("--checkpoint-every", type=int, default=32)
    parser.add_argument("--preset", type=Path, default=SMOKE)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="KEY=VALUE")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--no-expire", action="store_true", help="wait for lease TTLs")
    parser.add_argument("--max-delay", type=float, default=6.0, help="latest kill, seconds")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    report = chaos(
        kills=args.kills,
        steps=args.steps,
        grow=args.grow,
        workers=args.workers,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        preset=args.preset,
        sets=args.sets,
        lease_seconds=args.lease_seconds,
        expire=not args.no_expire,
        max_delay=args.max_delay,
        workdir=args.keep,
    )
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
