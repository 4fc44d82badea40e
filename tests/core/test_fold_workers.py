"""Folds trained side by side in worker processes (core/training/fold_workers.py)."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from _trainkit import tiny_config, tiny_demo

from ctviewer.core.errors import Cancelled
from ctviewer.core.events import EpochEnded, FoldStarted, Message
from ctviewer.core.model.inference import predict_arrays
from ctviewer.core.training.cv import cross_validate
from ctviewer.core.training.fold_workers import MIN_WORK, worker_plan


def test_worker_plan_keeps_small_texture_gpu_less_and_distributed_work_in_this_process(monkeypatch):
    monkeypatch.delenv("CTVIEWER_FOLD_WORKERS", raising=False)
    monkeypatch.setattr("ctviewer.core.training.fold_workers.usable_cpus", lambda: 2)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._has_gpu", lambda: False)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._available_memory", lambda: 16 * 2**30)
    recipe = tiny_config(input_size=128, epochs=60)
    big = [80] * 5  # the SIIM cv: 24 000 image-epochs
    assert worker_plan(recipe, big) == (5, 1), "5 folds on 3 workers would end with 2 (the cores not full)"
    assert worker_plan(recipe, [80] * 6) == (3, 1), "one process more than CPUs, two full rounds"
    assert worker_plan(recipe, [10, 10]) == (0, 0), "too little work to pay the workers' start"
    assert sum([10, 10]) * recipe.epochs < MIN_WORK
    assert worker_plan(replace(recipe, model="texture"), big) == (0, 0)
    assert worker_plan(recipe, big, strategy=object()) == (0, 0), "a tf.distribute strategy is the parallelism"
    assert worker_plan(recipe, [80]) == (0, 0)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._has_gpu", lambda: True)
    assert worker_plan(recipe, big) == (0, 0)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._has_gpu", lambda: False)
    monkeypatch.setattr("ctviewer.core.training.fold_workers.usable_cpus", lambda: 1)
    assert worker_plan(recipe, big) == (0, 0)
    monkeypatch.setattr("ctviewer.core.training.fold_workers.usable_cpus", lambda: 8)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._available_memory", lambda: 4 * 2**30)
    assert worker_plan(recipe, big) == (2, 4), "no more workers than the memory holds"
    monkeypatch.setattr("ctviewer.core.training.fold_workers.usable_cpus", lambda: 2)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._available_memory", lambda: 5.5 * 2**30)
    assert worker_plan(recipe, big) == (3, 1), "memory for 3: the last round is short, but 3 it is"
    monkeypatch.setattr("ctviewer.core.training.fold_workers.usable_cpus", lambda: 8)
    monkeypatch.setattr("ctviewer.core.training.fold_workers._available_memory", lambda: 64 * 2**30)
    assert worker_plan(recipe, big) == (5, 2)
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "0")
    assert worker_plan(recipe, big) == (0, 0)
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "3")
    assert worker_plan(recipe, [10, 10]) == (2, 4), "asked for: as many as there are folds"


@pytest.mark.parametrize(("folds", "cpus", "most", "expected"), [
    (5, 2, 8, 5),  # 3 would end on 2 workers, 4 on 1
    (10, 2, 8, 5),  # two full rounds of 5
    (6, 2, 8, 3),
    (7, 2, 8, 4),  # 4 + 3: the last round still keeps 3 busy
    (5, 2, 4, 3),  # memory for 4 at most: no balanced count, so one more than the CPUs
    (2, 2, 8, 2),
    (5, 8, 8, 5),
])
def test_balanced_workers_keep_the_cores_full_to_the_last_fold(folds, cpus, most, expected):
    from ctviewer.core.training.fold_workers import balanced_workers

    assert balanced_workers(folds, cpus, most) == expected


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tiny_demo(tmp_path_factory.mktemp("fold_workers"), n_patients=4)


def test_folds_in_workers_reach_the_caller_in_order_and_are_the_same_every_run(demo, monkeypatch):
    dataset, cache = demo
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "2")
    config = tiny_config(choose_recipe=False)
    runs, events = [], []
    for _ in range(2):
        seen: list = []
        runs.append(cross_validate(dataset, config, folds=3, cache=cache, keep_models=True, on_event=seen.append))
        events.append(seen)
    first, second = runs
    assert any(isinstance(e, Message) and "worker processes" in e.text for e in events[0])
    # The caller sees fold after fold, as when this process trains them.
    assert [e.fold for e in events[0] if isinstance(e, FoldStarted)] == [0, 1, 2]
    epoch_folds = [e.fold for e in events[0] if isinstance(e, EpochEnded)]
    assert epoch_folds == sorted(epoch_folds) and set(epoch_folds) == {0, 1, 2}
    # Every image has its out-of-fold probability, from a member the caller holds and can use.
    probs = first.predictions.probs
    assert np.isfinite(probs).all() and len(probs) == len(dataset)
    assert len(first.ensemble.members) == 3
    for k, member in enumerate(first.models):
        assert member.model is not None and member.epochs_run == config.epochs
        rows = np.flatnonzero(first.predictions.folds == k)
        x = np.stack([np.asarray(cache.array(first.predictions.paths[i], member.preprocessing), np.float32)
                      for i in rows])
        np.testing.assert_allclose(predict_arrays(member.model, x, batch_size=config.batch_size, tta=False),
                                   probs[rows], atol=1e-5)
    # Folds are dealt to workers by number: the same run gives the same numbers.
    np.testing.assert_array_equal(second.predictions.probs, probs)
    assert second.threshold == first.threshold


def test_cancel_reaches_the_workers(demo, monkeypatch):
    dataset, cache = demo
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "2")
    epochs_seen: list = []

    def on_event(event):
        if isinstance(event, EpochEnded):
            epochs_seen.append(event)

    with pytest.raises(Cancelled):
        cross_validate(dataset, tiny_config(choose_recipe=False, epochs=50), folds=3, cache=cache,
                       on_event=on_event, should_stop=lambda: bool(epochs_seen))
    assert 1 <= len(epochs_seen) < 50, "the workers stopped long before their 50 epochs"


def test_the_workers_end_when_the_run_stops_before_they_get_a_fold(demo, monkeypatch):
    import multiprocessing

    dataset, cache = demo
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "2")
    with pytest.raises(Cancelled):  # stopped while the recipe is chosen, before any fold was dealt out
        cross_validate(dataset, tiny_config(), folds=3, cache=cache, should_stop=lambda: True)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("ctviewer-fold-worker")]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_the_workers_end_when_their_caller_is_killed():
    """A caller killed by a signal runs no clean-up: its workers must notice and exit on their own."""
    import signal
    import subprocess
    import sys
    import time

    def alive(pid: int) -> bool:
        try:  # a zombie (ended, not yet reaped by the fork server) counts as gone
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    script = (
        "import time\n"
        "from ctviewer.core.training.fold_workers import FoldWorkers\n"
        "workers = FoldWorkers(2, 1)\n"
        "print(' '.join(str(p.pid) for p in workers._processes), flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as caller:
        try:
            pids = [int(pid) for pid in caller.stdout.readline().split()]
            assert len(pids) == 2
            time.sleep(1.0)
            assert all(alive(pid) for pid in pids)  # up, and waiting for folds
        finally:
            caller.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "fold workers outlived the process that started them"


def test_a_killed_worker_leaves_its_folds_to_this_process(demo, monkeypatch):
    """A worker that dies (killed, out of memory) costs its folds' progress, not the run."""
    import multiprocessing
    import signal

    dataset, cache = demo
    monkeypatch.setenv("CTVIEWER_FOLD_WORKERS", "2")
    config = tiny_config(choose_recipe=False)
    killed: list[int] = []

    def kill_the_workers_once(event) -> None:
        if isinstance(event, EpochEnded) and not killed:
            for child in multiprocessing.active_children():
                if child.name.startswith("ctviewer-fold-worker"):
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
        seen.append(event)

    seen: list = []
    # Two folds per worker: with one each, worker 1 could end its only fold (and exit) before fold 0's
    # first epoch is passed on; with a second fold still to do it is there to be killed.
    result = cross_validate(dataset, config, folds=4, cache=cache, on_event=kill_the_workers_once)
    assert len(killed) == 2
    assert any(isinstance(e, Message) and e.level == "warning" and "remaining folds in this process" in e.text
               for e in seen), [e for e in seen if isinstance(e, Message)]
    assert np.isfinite(result.predictions.probs).all() and len(result.predictions.probs) == len(dataset)
    assert len(result.fold_thresholds) == 4 and not result.cancelled
