"""How much sweep time does pruning save?  Runs ``hparams_search=init_scale`` twice on the same
problem with the same sampler seed, once without a pruner and once with the preset's median
pruner, and prints wall time, trials completed/pruned, epochs trained and the best value.

With the random sampler both sweeps draw the same 30 (init, scale) points, so the comparison is
exact: pruning can only lose the best value by pruning the trial that would have won.  With TPE
(the preset's sampler) the pruned trials feed back into the sampler, so the two sweeps differ.

    PYTHONPATH=src python benchmarks/pruning_benchmark.py                 # mnist5k MLP, random
    PYTHONPATH=src python benchmarks/pruning_benchmark.py --sampler tpe
    PYTHONPATH=src python benchmarks/pruning_benchmark.py -- experiment=s4_circles
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]


def sweep(workdir: Path, name: str, pruner: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=init_scale",
           f"hydra/sweeper/sampler={args.sampler}", f"hydra/sweeper/pruner={pruner}",
           f"hydra.sweeper.n_trials={args.n_trials}", f"hydra.sweeper.n_jobs={args.n_jobs}",
           f"hydra.sweeper.storage=sqlite:///{workdir}/optuna.db",
           f"hydra.sweeper.study_name={name}", f"hydra.sweep.dir={workdir}/{name}",
           f"tracking.tracking_uri=sqlite:///{workdir}/mlflow.db",
           f"tracking.artifact_root={workdir}/artifacts", "trainer.enable_progress_bar=false",
           *args.overrides]
    if args.sampler != "grid":
        cmd.append(f"hydra.sweeper.sampler.seed={args.seed}")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/optuna.db")
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    return {
        "pruner": pruner, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
        "trials": len(trials),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best_value": best.value, "best_trial": best.number, "best_params": best.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", default="random", choices=["random", "tpe"])
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pruning-bench-") as tmp:
        rows = [sweep(Path(tmp), f"bench-{pruner}", pruner, args) for pruner in ("nop", "median")]
    print(f"init x scale search, {args.n_trials} trials, {args.n_jobs} at a time, sampler "
          f"{args.sampler} (seed {args.seed}), overrides: {' '.join(args.overrides) or '(none)'}")
    print("| pruner | wall time (s) | CPU time (s) | complete | pruned | epochs trained "
          "| best val/acc | best trial |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["best_params"].items())
        print(f"| {r['pruner']} | {r['seconds']} | {r['cpu_seconds']} | {r['complete']} | {r['pruned']} | {r['epochs']} "
              f"| {r['best_value']:.4f} | #{r['best_trial']} ({params}) |")
    saved = 1 - rows[1]["seconds"] / rows[0]["seconds"]
    cpu_saved = 1 - rows[1]["cpu_seconds"] / rows[0]["cpu_seconds"]
    print(f"pruning saved {saved:.0%} of the sweep's wall time "
          f"({rows[0]['seconds'] - rows[1]['seconds']:.0f} s), {cpu_saved:.0%} of its CPU time, "
          f"{1 - rows[1]['epochs'] / rows[0]['epochs']:.0%} of its epochs; best value "
          f"{'the same' if rows[0]['best_value'] == rows[1]['best_value'] else 'different'}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
