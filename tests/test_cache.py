"""The run cache: curve reduction, atomic commits, leases, schema versions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from support import tiny_preset_text

from gamma_tui.cache import Cache, CacheError, Progress, decode_arrays, encode_arrays
from gamma_tui.config import expand, parse_preset
from gamma_tui.schedule import Chunk, reduce_losses, window_at


def registered(cache: Cache, steps: int = 40) -> list[str]:
    preset = parse_preset(tiny_preset_text())
    specs = expand(preset)
    cache.register_sweep(preset.name, "", {}, specs, steps)
    return [s.run_id for s in specs]


def test_window_widths_double_every_octave_past_the_cap() -> None:
    assert [window_at(s, 100) for s in (0, 99, 100, 199, 200, 399, 400, 800)] == [
        1,
        1,
        2,
        2,
        4,
        4,
        8,
        16,
    ]


@pytest.mark.parametrize("cut", [(0, 5000), (0, 1234), (333, 4321), (150, 151)])
def test_reduction_keeps_every_step_accounted_and_means_exact(cut: tuple[int, int]) -> None:
    start, stop = cut
    losses = np.arange(start, stop, dtype=np.float32)
    chunks = reduce_losses(start, losses, cap=100)
    assert chunks[0].start_step == start
    assert sum(c.window * len(c.values) for c in chunks) == stop - start
    for chunk in chunks:  # loss = step, so each window mean is its centre
        centres = (
            chunk.start_step + (chunk.window - 1) / 2 + chunk.window * np.arange(len(chunk.values))
        )
        np.testing.assert_allclose(chunk.values, centres, rtol=1e-6)


def test_log_reduction_bounds_points_per_octave() -> None:
    chunks = reduce_losses(0, np.ones(100 * 2**6, dtype=np.float32), cap=100)
    assert sum(len(c.values) for c in chunks) == 100 + 6 * 50


def test_commit_round_trip_and_curve_assembly(cache: Cache) -> None:
    ids = registered(cache)
    assert cache.claim(ids[:1], "w") == ids[:1]
    first = Progress(
        ids[0],
        3,
        [Chunk(0, 1, np.array([3, 2, 1], np.float32))],
        {"p0": np.eye(2)},
        "running",
        3.0,
        1.0,
    )
    assert cache.commit("w", [first]) == []
    second = Progress(
        ids[0], 7, [Chunk(3, 2, np.array([5, 7], np.float32))], None, "done", 3.0, 7.0
    )
    cache.commit("w", [second])
    curve = cache.curves([ids[0]])[ids[0]]
    np.testing.assert_array_equal(curve.steps, [0, 1, 2, 3.5, 5.5])
    np.testing.assert_array_equal(curve.loss, [3, 2, 1, 5, 7])
    run = cache.runs(run_ids=ids[:1])[0]
    assert (run.status, run.steps_done, run.init_loss, run.lease_owner) == ("done", 7, 3.0, None)
    step, arrays = cache.checkpoint(ids[0])
    assert step == 3 and np.array_equal(arrays["p0"], np.eye(2))


def test_live_lease_blocks_other_workers_and_stale_one_does_not(cache: Cache) -> None:
    ids = registered(cache)
    assert cache.claim(ids, "a") == ids
    assert cache.claim(ids, "b") == []
    cache._db.execute("UPDATE runs SET lease_expires=?", (time.time() - 1,))
    assert cache.runs(run_ids=ids[:1])[0].state == "interrupted"
    assert cache.claim(ids, "b") == ids
    lost = cache.commit("a", [Progress(ids[0], 1, [], None, "running", 1.0, 1.0)])
    assert lost == [ids[0]]  # the old holder cannot write over the new one


def test_release_requeues_unfinished_runs(cache: Cache) -> None:
    ids = registered(cache)
    cache.claim(ids, "a")
    cache.release("a")
    assert {r.status for r in cache.runs()} == {"queued"}


def test_done_run_is_requeued_only_for_more_steps(cache: Cache) -> None:
    ids = registered(cache, steps=5)
    cache.claim(ids[:1], "w")
    cache.commit("w", [Progress(ids[0], 5, [], None, "done", 1.0, 1.0)])
    registered(cache, steps=5)
    assert cache.runs(run_ids=ids[:1])[0].status == "done"
    registered(cache, steps=9)
    run = cache.runs(run_ids=ids[:1])[0]
    assert (run.status, run.steps_target, run.steps_done) == ("queued", 9, 5)


def test_checkpoints_refuse_pickles() -> None:
    blob = encode_arrays({"a": np.arange(3)})
    assert np.array_equal(decode_arrays(blob)["a"], np.arange(3))
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode_arrays(buffer.getvalue())


def test_newer_schema_is_refused_with_advice(tmp_path) -> None:
    Cache(tmp_path).close()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(CacheError, match="newer gamma-tui"):
        Cache(tmp_path)


def test_garbage_file_is_a_cache_error(tmp_path) -> None:
    (tmp_path / "cache.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CacheError, match="cannot open"):
        Cache(tmp_path)


def test_delete_sweep_keeps_runs_shared_with_other_sweeps(cache: Cache) -> None:
    ids = registered(cache)
    cache.register_sweep("other", "", {}, expand(parse_preset(tiny_preset_text()))[:3], 40)
    deleted = cache.delete_sweep("preset")
    assert deleted == len(ids) - 3
    assert len(cache.runs()) == 3
    with pytest.raises(CacheError, match="no sweep named"):
        cache.sweep("preset")


def test_curves_since_reads_only_new_chunks(cache: Cache) -> None:
    ids = registered(cache)
    cache.claim(ids[:2], "w")
    for start in (0, 3):
        cache.commit(
            "w",
            [
                Progress(
                    run_id,
                    start + 3,
                    [Chunk(start, 1, np.full(3, start, np.float32))],
                    None,
                    "running",
                    1.0,
                    1.0,
                )
                for run_id in ids[:2]
            ],
        )
    fresh = cache.curves(ids[:2], since={ids[0]: 3, ids[1]: 0})
    np.testing.assert_array_equal(fresh[ids[0]].steps, [3, 4, 5])
    np.testing.assert_array_equal(fresh[ids[1]].steps, [0, 1, 2, 3, 4, 5])
    assert [r.run_id for r in cache.runs(run_ids=ids[:2])] == sorted(
        ids[:2], key=lambda i: [r.run_id for r in cache.runs()].index(i)
    )


def test_version_one_cache_is_rekeyed_to_todays_run_ids(tmp_path: Path) -> None:
    """Opening a schema-1 cache moves every run (curve, checkpoint, sweep membership) to the id
    its spec has now, so runs cached before ignored keys left the id are not trained twice."""
    text = (
        '[network]\nkind = "chain"\ndepth = 2\n[data]\nkind = "scalar"\n[train]\nbatch_size = 1\n'
        "steps = 5\n[gamma]\nmin = 1\nmax = 10\n[eta]\nmin = 0.1\nmax = 0.1\n"
    )
    specs = expand(parse_preset(text))
    with Cache(tmp_path / "runs") as cache:
        cache.register_sweep("toy", text, {}, specs, 5)
        cache.claim([specs[0].run_id], "w")
        cache.commit(
            "w",
            [
                Progress(
                    specs[0].run_id,
                    5,
                    reduce_losses(0, np.ones(5, np.float32), 64),
                    {"p0": np.ones(2)},
                    "done",
                    1.0,
                    1.0,
                )
            ],
        )
    database = sqlite3.connect(tmp_path / "runs" / "cache.sqlite")
    with database:  # what a schema-1 cache of the same runs looked like: other ids
        for index, spec in enumerate(specs):
            for table in ("runs", "sweep_runs", "curve_chunks", "checkpoints", "evals"):
                database.execute(
                    f"UPDATE {table} SET run_id=? WHERE run_id=?", (f"old{index}", spec.run_id)
                )
        database.execute("UPDATE meta SET value='1' WHERE key='schema'")
    database.close()
    with Cache(tmp_path / "runs") as cache:
        runs = {r.run_id: r for r in cache.runs("toy")}
        assert set(runs) == {s.run_id for s in specs}
        assert runs[specs[0].run_id].status == "done"
        assert cache.curves([specs[0].run_id])[specs[0].run_id].loss.size == 5
        assert cache.checkpoint(specs[0].run_id) is not None
