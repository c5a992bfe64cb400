"""Placement of the ensemble launcher's chunks on devices: the pure rule (fake device names and
sizes, no GPU needed), the CPU's worker processes (how many, which shares), refusal of bad
``hydra.launcher.devices``, and two worker processes giving each member the results it gets
trained in one process."""

from __future__ import annotations

import itertools

import pytest
from conftest import all_runs, run_cli
from mlflow.tracking import MlflowClient

from initlab.ensemble.placement import (MEMBERS_PER_WORKER, Device, budgets, chunk_cost,
                                       cpu_workers, device_names, plan, split_groups)


def makespan(costs, placed):
    return max(sum(costs[i] for i in dev) for dev in placed)


def test_longest_first_to_the_least_loaded_device():
    costs = [3, 5, 2, 5, 4, 1]
    # 5(#1)->d0, 5(#3)->d1, 4(#4)->d0, 3(#0)->d1, 2(#2)->d0 (11 vs 8: d1), ... deterministic
    assert plan(costs, 2) == [[1, 4, 5], [3, 0, 2]]
    assert plan(costs, 2) == plan(list(costs), 2)  # same input, same plan
    assert sorted(i for dev in plan(costs, 3) for i in dev) == list(range(6))


def test_ties_go_to_the_first_device_in_sweep_order():
    assert plan([1, 1, 1, 1], 2) == [[0, 2], [1, 3]]
    assert plan([7], 3) == [[0], [], []]
    assert plan([], 2) == [[], []]
    with pytest.raises(ValueError):
        plan([1], 0)


@pytest.mark.parametrize("costs", [[7, 6, 5, 4, 3, 2, 1], [9, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                                   [4, 4, 3, 3, 3, 2, 2], [10, 10, 10, 1]])
def test_within_four_thirds_of_the_best_makespan(costs):
    for n in (2, 3):
        best = min(max(sum(c for c, d in zip(costs, a) if d == k) for k in range(n))
                   for a in itertools.product(range(n), repeat=len(costs)))
        assert makespan(costs, plan(costs, n)) <= 4 / 3 * best + 1e-9


def test_device_names_from_the_launcher_setting_and_the_trainer():
    assert device_names(None, "cpu", 0) == ["cpu"]
    assert device_names(None, "gpu", 2) == ["cuda:0"]
    assert device_names(None, "gpu", 0) == ["cpu"]  # trainer=gpu without CUDA: the CPU
    assert device_names(3, "cpu", 4) == ["cpu"] * 3
    assert device_names(2, "gpu", 4) == ["cuda:0", "cuda:1"]
    assert device_names(["cuda:2", "cuda:0"], "gpu", 4) == ["cuda:2", "cuda:0"]
    assert device_names(["cpu", "cpu"], "cpu", 0) == ["cpu", "cpu"]
    for spec, count in ((5, 2), (0, 0), (["cuda:4"], 4), (["tpu"], 0), ([], 0), (["cuda:x"], 1)):
        with pytest.raises(ValueError):
            device_names(spec, "gpu", count)


def test_budgets_take_the_free_cuda_memory_when_it_is_smaller():
    free = {"cuda:0": 1000 * 2**20, "cuda:1": 10 * 2**30}.get
    got = budgets(["cuda:0", "cuda:1", "cpu", "cuda:2"], 2048, free_bytes=free)
    assert got == [Device("cuda:0", int(0.9 * 1000 * 2**20)), Device("cuda:1", 2048 * 2**20),
                   Device("cpu", 2048 * 2**20), Device("cuda:2", 2048 * 2**20)]


def test_chunk_cost_grows_with_members_size_and_steps():
    assert chunk_cost(4, 100, 10) == 2 * chunk_cost(2, 100, 10) == 4000
    assert chunk_cost(1, 100, 0) == 100  # at least one step


@pytest.mark.parametrize("spec,members,cores,workers", [
    (None, 60, 2, 2), (None, 16, 2, 2), (None, 15, 2, 1), (None, 4, 2, 1),  # auto: 8 a worker
    (None, 60, 16, 60 // MEMBERS_PER_WORKER), (None, 60, 1, 1),
    (2, 4, 2, 2), (3, 2, 2, 2), (1, 60, 2, 1), (["cpu", "cpu"], 4, 2, 2),  # asked for
])
def test_cpu_worker_processes_one_per_core_and_per_eight_members(spec, members, cores, workers):
    assert cpu_workers(spec, members, cores) == workers


def test_groups_are_cut_into_equal_shares_for_the_workers():
    assert split_groups([60], 2) == [(0, 0, 30), (0, 30, 60)]
    assert split_groups([16], 2) == [(0, 0, 8), (0, 8, 16)]
    assert split_groups([7], 2) == [(0, 0, 4), (0, 4, 7)]
    assert split_groups([10, 2], 2) == [(0, 0, 5), (0, 5, 10), (1, 0, 2)]
    parts = split_groups([13, 40, 1], 3)
    for g, n in enumerate([13, 40, 1]):  # every member once, in order
        assert [i for gg, a, b in parts if gg == g for i in range(a, b)] == list(range(n))
    assert max(b - a for _, a, b in parts) <= -(-54 // 3)


S4 = ["experiment=s4_circles", "init=he", "trainer.max_epochs=2", "dataset.steps_per_epoch=6",
      "trainer.log_every_n_steps=2", "callbacks=none", "diagnostics=off",
      "trainer.enable_progress_bar=false", "hydra/launcher=ensemble",
      "hydra.launcher.records=fast", "seed=0,1", "optimizer.lr=0.1,0.05"]


def test_a_device_that_is_not_there_is_refused_before_anything_exists(tmp_path, unborn_store):
    proc = run_cli(tmp_path, unborn_store, "-m", *S4, "hydra.launcher.devices=[cpu,tpu]",
                   check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hydra.launcher.devices" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "multirun").exists()


def _members(store):
    client = MlflowClient(store)
    out = {}
    for r in all_runs(store, "s4_circles"):
        if "mlflow.parentRunId" not in r.data.tags:
            continue
        key = (r.data.params["optimizer.lr"], r.data.params["seed"])
        curve = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id,
                                                                      "train/loss_step")]
        out[key] = (r.info.status, r.data.metrics, sorted(curve), r.data.tags)
    return out


@pytest.mark.slow
def test_two_cpu_worker_processes_give_each_member_its_sequential_results(tmp_path):
    parallel = f"sqlite:///{tmp_path}/parallel.db"
    run_cli(tmp_path, parallel, "-m", *S4, "hydra.launcher.devices=[cpu,cpu]",
            "hydra.launcher.max_members=1", "hydra.sweep.dir=parallel", timeout=600)
    sequential = f"sqlite:///{tmp_path}/sequential.db"
    run_cli(tmp_path, sequential, "-m", *S4, "hydra.launcher.max_members=1",
            "hydra.sweep.dir=sequential", timeout=600)
    a, b = _members(parallel), _members(sequential)
    assert len(a) == len(b) == 4
    # two processes trained them: this one and a worker process, two members each
    assert len({v[3]["initlab.pid"] for v in a.values()}) == 2
    assert len({v[3]["initlab.pid"] for v in b.values()}) == 1
    for key in a:
        assert a[key][0] == b[key][0] == "FINISHED"
        assert a[key][3]["initlab.engine"] == "ensemble"
        assert a[key][2] == b[key][2] and len(a[key][2]) == 6  # every logged step, same values
        for metric in ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc"):
            assert a[key][1][metric] == b[key][1][metric], (key, metric)
