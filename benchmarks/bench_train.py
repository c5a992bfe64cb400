"""How fast does initlab train, next to a hand-written loop and next to S3's plain PyTorch loop?

    python benchmarks/bench_train.py            # the full benchmark (about 10 minutes, 2 cores)
    python benchmarks/bench_train.py --quick    # a smoke test on a tiny workload (seconds)

Workload (issues 5 and 10): the S0/S3 MLP 784-256-256-10, Adam lr 1e-3, batch 100, one epoch over the
60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist), CPU.  Loops:

* ``platform``: the real ``initlab.jobs.train(cfg)`` on a Hydra-composed ``conf/train.yaml``
  (tracking into a temporary MLflow store, default callbacks: divergence guard, progress bar,
  diagnostics, and whatever ``callbacks`` the config adds), and again with ``tracking=none
  diagnostics=off``.  ``dataset.val_size=0`` so that every loop does the same 600 steps on the
  same 60,000 images.
* ``bare``: a hand-written loop over the same in-memory float32 tensors, batches gathered with a
  pre-shuffled index, no DataLoader, and the platform's own optimizer (``conf/optimizer/adam.yaml``:
  fused Adam); a second bare row uses ``torch.optim.Adam``'s defaults, as S3 does.
* ``s3``: S3's loop: ``torchvision.datasets.FashionMNIST`` with ``ToTensor()`` through a
  ``DataLoader`` (batch 100, shuffle, drop_last), ``torch.optim.Adam(lr=1e-3)``.

An "epoch" is the wall-clock from the epoch's first hook to the end of training (steps, every
hook, epoch-end logging, progress bar); set-up before fit and the test pass after it are not in
it, but the ``job`` rows time the whole ``train(cfg)`` call.  The loops run alternately (A B C A
B C ...), ``--repeats`` times, and the table shows medians; compare ratios, not seconds, on a
shared machine.  Then: cost growth (batch 32/100/512, the 5-layer 512 net), S4's circles (15,000
full-batch steps), a GPU row when CUDA is available, and ``python train.py``'s start-up time and
peak memory measured in a subprocess.  Every loop runs with torch's default thread count (one per
core, what a user's script gets) unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # clocks.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clocks import EpochClock  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Workload:
    """One image workload: what the three loops train and on which data."""

    dataset: str                 # initlab data set name
    hidden: list[int]
    batch: int
    extra: list[str] = field(default_factory=list)  # further overrides for the platform


FULL = Workload("fashion_mnist", [256, 256], 100)
QUICK = Workload("digits", [32, 32], 64, ["dataset.test_size=300"])


# ---- the platform --------------------------------------------------------------------------
def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def platform_overrides(w: Workload, store: Path | None, model: str | None = None,
                       diagnostics: bool = True) -> list[str]:
    hidden = ",".join(map(str, w.hidden))
    out = [f"dataset={w.dataset}", "dataset.val_size=0", f"dataset.batch_size={w.batch}",
           "callbacks.model_checkpoint.monitor=train/loss", "callbacks.model_checkpoint.mode=min",
           "optimized_metric=train/loss",
           "dataset.drop_last=true", "trainer.max_epochs=1", "optimizer=adam",
           "optimizer.lr=0.001", "+callbacks.bench_clock._target_=clocks.EpochClock", *w.extra]
    out += [f"model={model}"] if model else [f"model.hidden=[{hidden}]"]
    if store is None:
        out += ["tracking=none", "logger=none"]  # the loop alone: no CSV either
    else:
        out += [f"tracking.tracking_uri=sqlite:///{store}/mlflow.db",
                f"tracking.artifact_root={store}/artifacts"]
    return out if diagnostics else [*out, "diagnostics=off"]


def platform_optimizer(w: Workload) -> Callable:
    """The optimizer factory the platform builds from its config (``conf/optimizer/``)."""
    from initlab.engine.build import build

    return build(compose(platform_overrides(w, None)).optimizer)


@contextlib.contextmanager
def quiet():
    """Keep the progress bar and Lightning's chatter off the table (they still run)."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull), \
            contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_platform(overrides: list[str]) -> tuple[float, float, int]:
    """(epoch seconds, whole train(cfg) seconds, steps) of one real platform run."""
    from initlab.jobs import train

    cfg = compose(overrides)
    t0 = time.perf_counter()
    with quiet():
        train(cfg)
    job = time.perf_counter() - t0
    clock = EpochClock.last
    return clock.epochs[0], job, clock.steps


# ---- the hand-written loop -----------------------------------------------------------------
def make_mlp(in_features: int, hidden: list[int], outputs: int) -> torch.nn.Module:
    from initlab.nets import MLP

    model = MLP(in_features, outputs, hidden)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return model


def bare_epoch(x: torch.Tensor, y: torch.Tensor, hidden: list[int], batch: int,
               optimizer: Callable | None = None, seed: int = 0) -> tuple[float, int]:
    """One epoch over in-memory tensors: pre-shuffled index, batch gathers, no DataLoader.
    ``optimizer``: a factory of parameters (default ``torch.optim.Adam(lr=1e-3)``)."""
    torch.manual_seed(seed)
    model = make_mlp(x[0].numel(), hidden, 10)
    opt = (optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3)))(model.parameters())
    steps = len(x) // batch
    t0 = time.perf_counter()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    total = torch.zeros(())
    for step in range(steps):
        idx = order[step * batch:(step + 1) * batch]
        loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    float(total)  # the epoch's loss reaches the host once
    return time.perf_counter() - t0, steps


# ---- Lightning's own floor -----------------------------------------------------------------
def _floor_module(model: torch.nn.Module, loss_fn: Callable, optimizer: Callable):
    """The least a LightningModule can be: a training step returning the loss, one optimizer."""
    import lightning.pytorch as L

    class Floor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return loss_fn(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return optimizer(self.parameters())

    return Floor()


class _Iterable:
    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def lightning_floor(model: torch.nn.Module, batches: list, loss_fn: Callable,
                    optimizer: Callable, epochs: int = 1) -> tuple[float, int]:
    """Lightning's own per-step cost: the minimal module above on a list of ready batches, a
    Trainer with no logger, no checkpointing, no progress bar and no callback but the clock."""
    import lightning.pytorch as L

    from initlab.engine.build import skip_nvml_probe_without_driver

    skip_nvml_probe_without_driver()  # an environment fix, not Lightning's cost: as the platform
    clock = EpochClock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock])
    if isinstance(batches, list):  # (a plain list would be taken as a list of data loaders)
        batches = _Iterable(batches)
    with quiet():
        trainer.fit(_floor_module(model, loss_fn, optimizer), train_dataloaders=batches)
    return clock.fit_seconds, trainer.global_step


def floor_epoch(x: torch.Tensor, y: torch.Tensor, hidden: list[int], batch: int,
                optimizer: Callable, seed: int = 0) -> tuple[float, int]:
    """The bare loop's work (a pre-shuffled index, one gather per step) inside Lightning's
    floor: the difference to the bare loop is Lightning's own per-step cost."""
    torch.manual_seed(seed)
    model = make_mlp(x[0].numel(), hidden, 10)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return lightning_floor(model, _Gathered(x, y, order[: len(x) // batch * batch].split(batch)),
                           F.cross_entropy, optimizer)


class _Gathered:
    """Mini-batches gathered when asked for, as the bare loop and the platform do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices) -> None:
        self.x, self.y, self.indices = x, y, indices

    def __iter__(self):
        return ((self.x.index_select(0, i), self.y.index_select(0, i)) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)

# ---- S3's loop -----------------------------------------------------------------------------
class PilImages(torch.utils.data.Dataset):
    """torchvision's MNIST ``__getitem__`` (uint8 -> PIL image -> transform) over any uint8
    images: S3's per-sample path for data sets torchvision does not ship (``--quick``)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform) -> None:
        self.data, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i].numpy(), mode="L")), int(self.targets[i])


def s3_dataset(quick: bool, tmp: Path):
    from torchvision import transforms

    if quick:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.from_numpy((d.images * 255 / 16).astype("uint8"))
        return PilImages(images, torch.from_numpy(d.target), transforms.ToTensor())
    from torchvision.datasets import FashionMNIST

    raw = tmp / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in FASHION.glob("*-ubyte.gz"):  # torchvision reads the unpacked IDX files
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return FashionMNIST(str(tmp / "torchvision"), train=True, transform=transforms.ToTensor(),
                        download=False)


def s3_epoch(dataset, hidden: list[int], batch: int, seed: int = 0) -> tuple[float, int]:
    """S3: DataLoader(batch, shuffle, drop_last) -> X.view(-1, 784) -> Adam step."""
    torch.manual_seed(seed)
    in_features = dataset[0][0].numel()
    model = make_mlp(in_features, hidden, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    t0 = time.perf_counter()
    avg_cost, steps = 0, 0
    for x, y in loader:
        x = x.view(-1, in_features)
        opt.zero_grad()
        cost = F.cross_entropy(model(x), y)
        cost.backward()
        opt.step()
        avg_cost += cost / len(loader)
        steps += 1
    float(avg_cost.detach())
    return time.perf_counter() - t0, steps


# ---- S4: circles ---------------------------------------------------------------------------
def circles_overrides(store: Path | None, steps: int, epochs: int) -> list[str]:
    out = ["dataset=circles", "model=mlp_s4", "optimizer=sgd", "optimizer.lr=0.01",
           f"trainer.max_epochs={epochs}", f"dataset.steps_per_epoch={steps // epochs}",
           "init=he", "+callbacks.bench_clock._target_=clocks.EpochClock"]
    if store is None:
        return out + ["tracking=none", "logger=none"]
    return out + [f"tracking.tracking_uri=sqlite:///{store}/mlflow.db",
                  f"tracking.artifact_root={store}/artifacts"]


def bare_circles(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> float:
    """S4's loop: full-batch gradient descent, BCE on one sigmoid output."""
    torch.manual_seed(seed)
    from initlab.nets import MLP

    model = MLP(2, 1, [10, 5])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    target = y.float()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())
    return time.perf_counter() - t0


def floor_circles(x: torch.Tensor, y: torch.Tensor, steps: int, epochs: int,
                  seed: int = 0) -> float:
    """S4's loop inside Lightning's floor: the full batch ``steps // epochs`` times an epoch."""
    torch.manual_seed(seed)
    from initlab.nets import MLP

    target = y.float()
    loss_fn = lambda out, t: F.binary_cross_entropy_with_logits(out.squeeze(-1), t)  # noqa: E731
    batches = [(x, target)] * (steps // epochs)
    seconds, _ = lightning_floor(MLP(2, 1, [10, 5]), batches, loss_fn,
                                 lambda p: torch.optim.SGD(p, lr=0.01), epochs=epochs)
    return seconds


# ---- start-up and memory of `python train.py` ----------------------------------------------
def startup(w: Workload, tmp: Path) -> dict[str, float]:
    """Run ``python train.py`` (tracking on, 2 epochs) in a fresh process, twice on one store:
    seconds from process start to the first training step with a new store (schema creation)
    and with an existing one; wall time, peak RSS and RSS after each epoch of the second."""
    store = tmp / "startup-store"
    overrides = [*platform_overrides(w, store), "trainer.max_epochs=2",
                 "+callbacks.bench_clock.report=true", "optimized_metric=null",
                 f"hydra.run.dir={tmp}/startup-run"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result: dict[str, float] = {}
    for key in ("startup_new_store", "startup"):
        log = tmp / f"{key}.out"
        t0 = time.time()
        with open(log, "w") as out_file:
            proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides],
                                    cwd=tmp, env=env, stdout=out_file, stderr=subprocess.STDOUT)
            status = proc.wait()
        wall = time.time() - t0
        out = log.read_text()
        if status != 0:
            raise RuntimeError(f"train.py failed:\n{out[-5000:]}")
        clock = dict(re.findall(r"CLOCK (\w+)=(\S+)", out))
        result[key] = float(clock["first_step"]) - t0
    rss = [float(v) for k, v in sorted(clock.items()) if k.startswith("rss_after_epoch")]
    # of which imports: the same packages in a fresh interpreter (timed inside it: a process
    # with torch loaded takes a while to exit)
    # The reference: importing torch, Lightning, MLflow and Hydra, nothing of initlab.
    timed = ("import time; t = time.perf_counter(); import torch, lightning.pytorch, mlflow, "
             "hydra; print(time.perf_counter() - t)")
    result["imports"] = float(subprocess.run([sys.executable, "-c", timed], cwd=tmp, env=env,
                                             check=True, capture_output=True, text=True).stdout)
    # peak RSS from the child's VmHWM: its ru_maxrss would include this (big) process, which
    # Linux carries over from the forked copy that exec replaced
    return {**result, "wall": wall, "peak_rss": float(clock["peak_rss"]), "rss_epochs": rss}


# ---- the benchmark -------------------------------------------------------------------------
def alternate(loops: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run the loops A B C A B C ...; return each loop's timings."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            times[name].append(loop())
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def load_images(w: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    from initlab.data import loaders as datasets

    raw = datasets.load(w.dataset)
    return raw.x, raw.y


def fmt_row(name: str, seconds: float, steps: int, images: int, note: str = "") -> str:
    ips = f"{images / seconds:>10,.0f}" if images else f"{'':>10}"
    return f"  {name:<34}{seconds:>9.3f}{steps:>8}{ips}  {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny workload (8x8 digits, small nets, 1 repeat): a smoke test")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for every loop (default: torch's own, one "
                             "per core, as a user's script gets; on a machine busy with other "
                             "work, --threads 1 is far less noisy)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats of each loop (default 5; growth and circles use 3)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the train.py subprocess too
    quick = args.quick
    if not quick and not (FASHION / "train-images-idx3-ubyte.gz").exists():
        parser.exit(2, f"bench_train.py: the full benchmark reads Fashion-MNIST from {FASHION}: "
                       "`apt-get install dataset-fashion-mnist` (Debian), or run --quick\n")
    repeats = args.repeats or (1 if quick else 5)
    small_repeats = args.repeats or (1 if quick else 3)
    w = QUICK if quick else FULL
    circles_steps, circles_epochs = (200, 2) if quick else (15_000, 30)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="initlab-bench-"))
    try:
        return _run(args, quick, repeats, small_repeats, w, circles_steps, circles_epochs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, quick, repeats, small_repeats, w, circles_steps, circles_epochs, tmp) -> int:
    import platform as host

    print(f"initlab training benchmark{' (--quick)' if quick else ''}: {w.dataset}, "
          f"MLP {'-'.join(map(str, w.hidden))}, batch {w.batch}, Adam 1e-3, one epoch, CPU, "
          f"{torch.get_num_threads()} threads")
    print(f"host {host.node()}, {_cpu_model()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; torch {torch.__version__}")
    x, y = load_images(w)
    images = (len(x) // w.batch) * w.batch
    s3_data = s3_dataset(quick, tmp)
    store = tmp / "store"
    runs: dict[str, tuple] = {}

    def platform(key: str, overrides: list[str]) -> Callable[[], float]:
        def loop() -> float:
            epoch, job, steps = run_platform(overrides)
            runs.setdefault(key, []).append((job, steps))
            return epoch
        return loop

    def other(key: str, fn) -> Callable[[], float]:
        def loop() -> float:
            seconds, steps = fn()
            runs.setdefault(key, []).append((None, steps))
            return seconds
        return loop

    # Warm-up (imports, first MLflow store, allocator): not timed.
    optimizer = platform_optimizer(w)
    run_platform(platform_overrides(w, store))
    bare_epoch(x, y, w.hidden, w.batch, optimizer)

    loops = {
        "platform (tracking on)": platform("on", platform_overrides(w, store)),
        "platform (tracking=none, no diag)": platform("off", platform_overrides(w, None,
                                                                               diagnostics=False)),
        "bare loop (tensor slices)": other(
            "bare", lambda: bare_epoch(x, y, w.hidden, w.batch, optimizer)),
        "bare loop, Adam defaults": other("bare_default", lambda: bare_epoch(x, y, w.hidden, w.batch)),
        "Lightning floor (minimal module)": other(
            "floor", lambda: floor_epoch(x, y, w.hidden, w.batch, optimizer)),
        "S3 loop (DataLoader+ToTensor)": other("s3", lambda: s3_epoch(s3_data, w.hidden, w.batch)),
    }
    times = alternate(loops, repeats)
    m = {k: med(v) for k, v in times.items()}
    on, off = m["platform (tracking on)"], m["platform (tracking=none, no diag)"]
    bare, s3 = m["bare loop (tensor slices)"], m["S3 loop (DataLoader+ToTensor)"]
    floor = m["Lightning floor (minimal module)"]
    jobs = {k: med([j for j, _ in runs[k]]) for k in ("on", "off")}

    print(f"\nEpoch time, median of {repeats} (alternating runs)")
    print(f"  {'loop':<34}{'seconds':>9}{'steps':>8}{'images/s':>10}")
    for (name, values), key in zip(times.items(), ("on", "off", "bare", "bare_default", "floor", "s3")):
        print(fmt_row(name, med(values), runs[key][0][1], images,
                      f"min {min(values):.3f} max {max(values):.3f}"))
    print(f"  {'job: train(cfg), tracking on':<34}{jobs['on']:>9.3f}"
          f"{'':>18}  prepare + fit + test + MLflow records")
    print(f"  {'job: train(cfg), tracking=none':<34}{jobs['off']:>9.3f}{'':>18}  no diagnostics")

    targets = [
        ("platform / bare", on / bare, "<=", 1.3),
        ("  Lightning floor / bare", floor / bare, "", None),
        ("  platform / Lightning floor", on / floor, "", None),
        ("S3 / platform", s3 / on, ">=", 3.0),
        ("tracking+diagnostics / neither (epoch)", on / off, "<=", 1.10),
        ("tracking+diagnostics / neither (job)", jobs["on"] / jobs["off"], "", None),
    ]

    # ---- cost growth --------------------------------------------------------------------
    growth = [(f"batch {b}", b, None, w.hidden) for b in ((16, 64, 256) if quick else (32, 100, 512))]
    growth.append(("5-layer 512 net (mlp_512x4), batch " + str(w.batch), w.batch, "mlp_512x4",
                   [512, 512, 512, 512]))
    growth_rows = []
    for label, batch, model, hidden in growth:
        wb = Workload(w.dataset, w.hidden, batch, w.extra)
        t = alternate({
            "platform": lambda wb=wb, model=model: run_platform(platform_overrides(wb, store, model))[0],
            "bare": lambda batch=batch, hidden=hidden: bare_epoch(x, y, hidden, batch, optimizer)[0],
        }, small_repeats)
        growth_rows.append((label, med(t["platform"]), med(t["bare"])))

    # ---- S4 circles -----------------------------------------------------------------------
    from initlab.data import loaders as datasets

    c = datasets.load("circles")
    cx, cy = c.x, c.y
    circ: dict[str, list[float]] = {"platform": [], "platform_off": [], "bare": []}

    def circles_platform(tracking: bool) -> float:
        run_platform(circles_overrides(store if tracking else None, circles_steps, circles_epochs))
        return EpochClock.last.fit_seconds

    t = alternate({"platform": lambda: circles_platform(True),
                   "platform_off": lambda: circles_platform(False),
                   "bare": lambda: bare_circles(cx, cy, circles_steps),
                   "floor": lambda: floor_circles(cx, cy, circles_steps, circles_epochs)},
                  small_repeats)
    circ = {k: med(v) for k, v in t.items()}

    # ---- GPU ------------------------------------------------------------------------------
    gpu_line = "  GPU: skipped (CUDA not available)"
    if torch.cuda.is_available():
        over = [o for o in platform_overrides(w, store) if not o.startswith("trainer")]
        over += ["trainer=gpu", "trainer.max_epochs=1"]
        run_platform(over)  # warm-up: CUDA context, kernels
        t_gpu = med([run_platform(over)[0] for _ in range(small_repeats)])
        gpu_line = (f"  GPU ({torch.cuda.get_device_name(0)}), trainer=gpu, data on the device: "
                    f"{images / t_gpu:,.0f} images/s (epoch {t_gpu:.3f} s)")

    # ---- start-up and memory --------------------------------------------------------------
    st = startup(w, tmp)
    data_bytes = x.numel() * x.element_size()

    print(f"\nCost growth: epoch seconds, median of {small_repeats}")
    print(f"  {'workload':<40}{'platform':>9}{'bare':>9}{'ratio':>8}")
    for label, p, b in growth_rows:
        print(f"  {label:<40}{p:>9.3f}{b:>9.3f}{p / b:>8.2f}")
    print(f"\nS4 circles: {circles_steps:,} full-batch GD steps on {len(cx)} points "
          f"({circles_epochs} epochs of {circles_steps // circles_epochs}), median of {small_repeats}")
    print(f"  {'platform (tracking on), fit':<40}{circ['platform']:>9.3f} s")
    print(f"  {'platform (tracking=none), fit':<40}{circ['platform_off']:>9.3f} s")
    print(f"  {'bare loop':<40}{circ['bare']:>9.3f} s")
    print(f"  {'Lightning floor (minimal module)':<40}{circ['floor']:>9.3f} s")
    targets.append(("circles: platform / bare", circ["platform"] / circ["bare"], "<=", 2.0))
    targets.append(("  circles: Lightning floor / bare", circ["floor"] / circ["bare"], "", None))
    targets.append(("  circles: platform / Lightning floor", circ["platform"] / circ["floor"], "", None))
    targets.append(("start-up / bare imports", st["startup"] / st["imports"], "<=", 1.3))
    print(f"\n{gpu_line.strip()}")
    print("\nStart-up and memory of `python train.py` (tracking on, 2 epochs, fresh process)")
    print(f"  start-up (process start to first training step)  {st['startup']:>7.2f} s")
    print(f"  bare imports of torch, Lightning, MLflow, Hydra    {st['imports']:>7.2f} s")
    print(f"  the same, first run on a new store (schema)        {st['startup_new_store']:>7.2f} s")
    print(f"  whole process wall time                            {st['wall']:>7.2f} s")
    print(f"  peak RSS                                           {st['peak_rss'] / 2**20:>7.0f} MiB")
    print("  RSS after each epoch (MiB)                         "
          + ", ".join(f"{r / 2**20:.0f}" for r in st["rss_epochs"]))
    print(f"  training images held as float32                    {data_bytes / 2**20:>7.0f} MiB")

    print("\nTargets (issue 10)")
    for name, value, op, limit in targets:
        if limit is None:
            print(f"  {name:<40}{value:>7.2f}x")
            continue
        ok = value <= limit if op == "<=" else value >= limit
        print(f"  {name:<40}{value:>7.2f}x  target {op} {limit:g}x  {'met' if ok else 'NOT MET'}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
