"""Chaos test: SIGKILL training processes at random moments, rerun until done, compare bitwise.

    python bench/chaos.py [--kills 20] [--steps 30000] [--workers 2] [--seed 0] [--keep DIR]

A sweep (presets/smoke.toml with more steps and `train.checkpoint_every` small) trains into a
fresh cache in rounds. Each round either starts `python -m gamma_tui run ...` as a user does
and kills one of its workers, the whole process group (driver and workers) or the driver
alone (its orphaned workers a moment later), or starts `python -m gamma_tui.engine` workers
directly with a fast commit cadence (so kills often land inside SQLite commits) and kills
one or both. The moment is drawn uniformly from the start of the round, so kills land in
start-up, in training, in commits and in checkpoint writes. Rounds repeat until at least
`--kills` workers were killed; if the sweep finishes first, `train.steps` grows and the
chaos continues on the extensions. A last `gamma-tui run` without kills must finish the
sweep (exit 0), and one more must train nothing.

Then the cache is checked against an uninterrupted run of the final preset in a fresh
cache (CPU, same seeds): the same runs, every one done or diverged (lost: 0), no duplicated
or missing curve point (raw chunks contiguous, steps 0..steps_done-1 below the curve cap),
and every curve, counter and checkpoint BITWISE equal (mismatches: 0). Worker logs must not
mention "database is locked" and hold no traceback.

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
    mismatches: int = 0
    checkpoint_mismatches: int = 0
    lock_errors: int = 0
    log_tracebacks: int = 0
    final_exit: int | None = None
    rerun_trained: bool = False
    integrity: str = ""
    steps: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        """Every SIGKILL delivered to a live gamma-tui process."""
        return self.worker_kills + self.driver_kills

    @property
    def ok(self) -> bool:
        """No lost, duplicated or mismatched run, and the sweep finished cleanly."""
        return (
            not self.problems
            and self.lost == self.duplicated == self.mismatches == 0
            and self.checkpoint_mismatches == self.lock_errors == self.log_tracebacks == 0
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
                f"mismatches: {self.mismatches} (checkpoints: {self.checkpoint_mismatches})",
                f"lock errors: {self.lock_errors}; tracebacks in worker logs: "
                f"{self.log_tracebacks}; integrity: {self.integrity}",
                f"final run exit: {self.final_exit}; rerun trained again: {self.rerun_trained}",
                f"seconds: {self.seconds:.1f}",
            ]
            + [f"mismatch: {m}" for m in self.mismatched]
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

    def run_command(self, cache: Path, steps: int) -> list[str]:
        """`python -m gamma_tui run PRESET ...` for `steps` steps."""
        command = [sys.executable, "-m", "gamma_tui", "run", str(self.preset), "-q"]
        for item in [*self.sets, f"train.steps={steps}"]:
            command += ["--set", item]
        command += ["--cache", str(cache), "--device", "cpu", "--workers", str(self.workers)]
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
    delay = rng.uniform(0.0, setup.max_delay)
    deadline = time.monotonic() + delay
    engines: list[int] = []
    while time.monotonic() < deadline or not engines:
        if driver.poll() is not None:  # finished before the kill
            stderr = driver.stderr.read().decode(errors="replace") if driver.stderr else ""
            if driver.returncode != 0:
                report.problems.append(f"driver exited {driver.returncode}: {stderr[-300:]}")
            return driver.returncode
        engines = [p for p in descendants(driver.pid) if is_engine(p)]
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
        setup.say("reference: one uninterrupted run in a fresh cache")
        done = subprocess.run(
            setup.run_command(reference, final_steps), cwd=ROOT, env=env, capture_output=True
        )
        if done.returncode != 0:
            report.problems.append(f"reference run exited {done.returncode}")
        verify(cache, reference, sweep, report)
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


def _curve(parts: list[tuple[int, int, bytes]]) -> tuple[bytes, bytes]:
    """A curve as (step positions, float32 losses) bytes: chunk boundaries do not matter."""
    steps = [s + (w - 1) / 2 + w * np.arange(len(d) // 4, dtype=np.float64) for s, w, d in parts]
    flat = np.concatenate(steps).tobytes() if steps else b""
    return flat, b"".join(d for _, _, d in parts)


def _arrays(blob: bytes) -> dict[str, bytes]:
    import io

    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {k: archive[k].tobytes() + str(archive[k].shape).encode() for k in archive.files}


def _same(a: object, b: object) -> bool:
    """Equal, treating two NaNs as equal (bitwise intent for floats from SQLite REALs)."""
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return a == b


def verify(cache: Path, reference: Path, sweep: str, report: ChaosReport) -> None:
    """Compare the chaos cache with the uninterrupted reference; fill the report's counts."""
    with closing(connect(cache)) as db, db:
        report.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    mine, theirs = _rows(cache, sweep), _rows(reference, sweep)
    chunks, reference_chunks = _chunks(cache), _chunks(reference)
    checkpoints, reference_checkpoints = _checkpoints(cache), _checkpoints(reference)
    report.runs, report.expected_runs = len(mine), len(theirs)
    report.states = Counter(str(row["status"]) for row in mine.values())
    report.lost = sum(
        1 for run_id in theirs if run_id not in mine or mine[run_id]["status"] not in FINAL
    )
    # steps_target is left out: a diverged run keeps the target it had when it diverged
    compared = ("status", "steps_done", "diverged_step", "init_loss", "last_loss")
    for run_id, row in mine.items():
        spec = json.loads(str(row["spec_json"]))
        cap, done = int(spec["curve_cap"]), int(row["steps_done"])  # type: ignore[call-overload]
        parts = chunks.get(run_id, [])
        position, duplicated = 0, False
        for start, window, data in parts:  # contiguous, no overlap, no gap
            duplicated |= start != position
            position = start + window * (len(data) // 4)
        duplicated |= position != done
        if done <= cap:
            duplicated |= [s for s, w, d in parts if w != 1] != [] or sum(
                len(d) // 4 for _, _, d in parts
            ) != done
        report.duplicated += duplicated
        other = theirs.get(run_id)
        if other is None:
            report.mismatches += 1
            continue
        same = all(_same(row[key], other[key]) for key in compared)
        mine_curve, their_curve = _curve(parts), _curve(reference_chunks.get(run_id, []))
        same &= mine_curve == their_curve
        report.mismatches += not same
        if not same:
            a, b = (np.frombuffer(c[1], dtype="<f4") for c in (mine_curve, their_curve))
            n = min(len(a), len(b))
            diff = np.flatnonzero(a[:n].view("<u4") != b[:n].view("<u4"))
            first = int(diff[0]) if diff.size else n
            report.mismatched.append(
                f"run {run_id} (gamma {row['gamma']}, eta {row['eta']}, seed {row['seed']}): "
                f"{len(a)} vs {len(b)} points, first differing point {first}"
            )
        saved, expected = checkpoints.get(run_id), reference_checkpoints.get(run_id)
        if (saved is None) != (expected is None) or (
            saved is not None
            and expected is not None
            and (saved[0] != expected[0] or _arrays(saved[1]) != _arrays(expected[1]))
        ):
            report.checkpoint_mismatches += 1
    for log in (cache / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        report.lock_errors += text.count("database is locked")
        report.log_tracebacks += text.count("Traceback")


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
