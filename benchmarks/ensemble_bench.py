"""The ensemble launcher's targets (issue 12), side by side in one run:

    python benchmarks/ensemble_bench.py            # the full benchmark (an idle machine; long)
    python benchmarks/ensemble_bench.py --quick    # a smoke test with tiny settings (minutes)

Rows (wall-clock seconds; compare ratios on a shared machine):

1. **S4 sweep**: ``python train.py -m experiment=s4_circles init=zeros,random,he seed=range(20)
   hydra/launcher=ensemble callbacks=none`` (60 runs, diagnostics, start-up and tracking
   included) against one ordinary ``python train.py experiment=s4_circles`` (target <= 3x), also
   with ``hydra.launcher.records=fast`` (no curves figure or logged model per run); with
   ``--ordinary-sweep`` also the same 60 runs with the ordinary launcher, and the median test
   accuracy per family of both (target: within 0.02).
2. **S4 Optuna search**: ``hparams_search=init_sigma_w2``, 64 trials in batches of 16 (the
   sweeper's n_jobs), against one ordinary run (target <= 5x).
3. **Deep narrow digits net** 64-[100]x30-10 ReLU, 4 families x 10 seeds, one epoch: runs per
   second, ensemble vs the ordinary launcher on the same 40 runs (target >= 5x).
4. **One member alone** against the bare loop (the performance benchmark's workload:
   784-256-256-10, Adam, batch 100, one epoch of Fashion-MNIST; target <= 1.1x).
5. **784-256-256-10 x 8 members**: seconds per member stacked vs one member alone (target <= 1).

Rows 1-3 run ``train.py`` in subprocesses with a temporary MLflow store; rows 4-5 time the
engine in-process (``tracking=none``: the loop only).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = ["hydra/launcher=ensemble", "callbacks=none",
            "trainer.enable_progress_bar=false"]


def cli(args: list[str], store: Path, sweep: str) -> float:
    """Seconds of one ``python train.py ARGS`` from process start to exit."""
    cmd = [sys.executable, str(ROOT / "train.py"), *args,
           f"tracking.tracking_uri=sqlite:///{store}/mlflow.db",
           f"tracking.artifact_root={store}/artifacts",
           f"hydra.run.dir={store}/{sweep}", f"hydra.sweep.dir={store}/{sweep}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=store, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return seconds


def median_acc(store: Path, experiment: str, engine: str | None) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags
            and r.data.tags.get("initlab.engine") == engine]
    out: dict[str, list[float]] = {}
    for r in runs:
        out.setdefault(r.data.params["init.name"], []).append(r.data.metrics["test/acc"])
    return {k: statistics.median(v) for k, v in sorted(out.items())}


# ---- rows 1-3: the CLI -------------------------------------------------------------------------
def s4_rows(a, store: Path, rows: list) -> None:
    short = ["trainer.max_epochs=1", "dataset.steps_per_epoch=50"] if a.quick else []
    seeds = "range(2)" if a.quick else "range(20)"
    one = cli(["experiment=s4_circles", "trainer.enable_progress_bar=false", *short], store, "one")
    sweep = ["experiment=s4_circles", "init=zeros,random,he", f"seed={seeds}", *short]
    ens = cli(["-m", *sweep, *ENSEMBLE], store, "ens")
    n = 6 if a.quick else 60
    rows.append((f"S4 sweep, {n} runs, ensemble / one ordinary run", ens, one, ens / one, "<= 3"))
    fast = cli(["-m", *sweep, *ENSEMBLE, "hydra.launcher.records=fast"], store, "ens_fast")
    rows.append((f"S4 sweep, {n} runs, records=fast / one ordinary run", fast, one, fast / one,
                 "<= 3"))
    if a.ordinary_sweep:
        ordinary = cli(["-m", *sweep, "callbacks=none",
                        "trainer.enable_progress_bar=false"], store, "ord")
        rows.append((f"S4 sweep, {n} runs, ensemble / ordinary launcher", ens, ordinary,
                     ens / ordinary, "(speed-up)"))
        e, o = median_acc(store, "s4_circles", "ensemble"), median_acc(store, "s4_circles", None)
        for family in e:
            rows.append((f"S4 median test acc, {family}: ensemble vs ordinary", e[family],
                         o.get(family, float("nan")), abs(e[family] - o.get(family, 0)), "<= 0.02"))
    trials, batch = (4, 4) if a.quick else (64, 16)
    opt = cli(["-m", "hparams_search=init_sigma_w2", "experiment=s4_circles", *short, *ENSEMBLE,
               f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.n_jobs={batch}",
               f"hydra.sweeper.storage=sqlite:///{store}/optuna.db"], store, "opt")
    rows.append((f"S4 Optuna, {trials} trials in batches of {batch} / one ordinary run", opt, one,
                 opt / one, "<= 5"))


def deep_rows(a, store: Path, rows: list) -> None:
    depth, seeds, families = (3, 2, "he,xavier") if a.quick else (30, 10, "he,xavier,lecun,orthogonal")
    n = seeds * len(families.split(","))
    net = ["dataset=digits", "model=mlp_deep", f"model.depth={depth}", "model.width=100",
           "model.activation=relu", "trainer.max_epochs=1", "diagnostics=off"]  # training only
    sweep = ["-m", *net, f"init={families}", f"seed=range({seeds})"]
    ens = cli([*sweep, *ENSEMBLE], store, "deep_ens")
    # The same n runs with the ordinary launcher (one process, start-up paid once).  Timing
    # only a few of them and dividing would charge the ordinary launcher's start-up to those
    # few: with 4 of 40 that overstated the ratio by about 2.5x (4.8x against 1.9x).
    ordinary = cli([*sweep, "callbacks=none", "trainer.enable_progress_bar=false"], store,
                   "deep_ord")
    rows.append((f"deep digits 64-[100]x{depth}-10, {n} runs: runs/s ensemble vs ordinary",
                 n / ens, n / ordinary, ordinary / ens, ">= 5"))


# ---- rows 4-5: the engine in-process ----------------------------------------------------------
def engine_seconds(overrides: list[str], seeds: list[int]) -> float:
    """Seconds of ``GroupTrainer.run`` (tracking off) for one stacked group of ``seeds``."""
    from hydra import compose, initialize_config_dir

    from initlab.engine.build import prepare
    from initlab.ensemble.engine import GroupTrainer
    from initlab.ensemble.members import Member

    members = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for s in seeds:
            cfg = compose("train", overrides=[*overrides, f"seed={s}", "tracking=none",
                                              "logger=none", "callbacks=none", "diagnostics=off"])
            members.append(Member(index=s, cfg=cfg, job=prepare(cfg), name=str(s)))
    t0 = time.perf_counter()
    GroupTrainer(members).run()
    return time.perf_counter() - t0


def bare_seconds(overrides: list[str]) -> float:
    """The bare loop: the same data, net, init and optimizer, no engine around them."""
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir

    from initlab.engine.build import prepare

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "seed=0", "tracking=none", "logger=none",
                                          "callbacks=none", "diagnostics=off"])
    job = prepare(cfg)
    model, dm = job.module.model, job.datamodule
    optimizer = job.module.optimizer_factory(model.parameters())
    x, y = dm.splits["train"]
    t0 = time.perf_counter()
    for epoch in range(int(cfg.trainer.max_epochs)):
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), dm.batch_size):
            idx = order[start:start + dm.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - t0


def engine_rows(a, rows: list) -> None:
    if a.quick:
        w = ["dataset=digits", "model.hidden=[32,32]", "dataset.batch_size=64"]
    else:
        w = ["dataset=fashion_mnist", "model.hidden=[256,256]", "dataset.batch_size=100",
             "dataset.val_size=0"]
    w += ["optimizer=adam", "optimizer.lr=0.001", "trainer.max_epochs=1", "init=xavier"]
    best = lambda fn: min(fn() for _ in range(a.repeats))  # noqa: E731 - the first warms up
    bare = best(lambda: bare_seconds(w))
    one = best(lambda: engine_seconds(w, [0]))
    rows.append(("one member alone / bare loop", one, bare, one / bare, "<= 1.1"))
    m = 8
    eight = best(lambda: engine_seconds(w, list(range(m))))
    rows.append((f"{m} members stacked, per member / one member alone", eight / m, one,
                 eight / m / one, "<= 1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    parser.add_argument("--ordinary-sweep", action="store_true",
                        help="also run the S4 sweep with the ordinary launcher (60 runs)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="in-process rows: the best of this many (the first warms up)")
    parser.add_argument("--only", choices=["s4", "deep", "engine"], action="append")
    a = parser.parse_args()
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="initlab-ensemble-bench-") as tmp:
        store = Path(tmp)
        for name, fn in (("s4", lambda: s4_rows(a, store, rows)),
                         ("deep", lambda: deep_rows(a, store, rows)),
                         ("engine", lambda: engine_rows(a, rows))):
            if not a.only or name in a.only:
                fn()
    import torch

    print(f"\nEnsemble benchmark{' (--quick)' if a.quick else ''}: {platform.node()}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| measure | ensemble | reference | ratio | target |\n|---|---|---|---|---|")
    for label, mine, ref, ratio, target in rows:
        print(f"| {label} | {mine:.3g} | {ref:.3g} | {ratio:.3g} | {target} |")


if __name__ == "__main__":
    main()
