"""Datasets as tensors, standardised, kept whole on one device.

`load(name)` returns a :class:`Dataset` whose images have shape ``[N, C, H, W]`` (float32,
standardised per channel with the training set's mean and std) and labels shape ``[N]`` (int64).
Batches are taken by indexing (see :func:`batches`), not through a DataLoader: on a GPU a
loader costs more than the small models' training steps.

Datasets:
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 10 classes), the offline default.
  CHOICE: a fixed stratified split, 80 % train / 20 % test, ``random_state=0``.
- ``fashion_mnist``: the 28x28 originals, looked for in ``data_dir``, then in the folder of
  Debian's ``dataset-fashion-mnist`` package, then downloaded by torchvision when allowed; a
  ``data_dir`` that is not a folder is an error (without ``download``), not a reason to use
  the system copy.
- ``cifar10`` / ``cifar100``: torchvision's loaders over ``data_dir`` (download when allowed).
"""
from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import replacing

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
CACHE_DIR = Path.home() / ".cache" / "gflib"

@dataclass(frozen=True)
class Augmentation:
    """The DA variant's recipe for one dataset (:func:`augment`): a random shift of up to ``pad``
    pixels each way (a crop of the image zero-padded by ``pad``), then a horizontal flip with
    probability 1/2 when ``flip``; ``text`` says it in words."""

    pad: int
    flip: bool
    text: str


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: ``load(data_dir, download) -> Dataset`` (standardised), and what is known
    without loading it: one image's ``shape`` ``(C, H, W)``, ``classes``, ``n_train`` and
    ``n_test`` (images of each split), the DA recipe ``augmentation`` (None: no DA variant) and
    the book's ``label``."""

    load: Callable
    shape: tuple
    classes: int
    n_train: int
    n_test: int
    augmentation: Augmentation | None
    label: str

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else ()
        if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                  for d in shape):
            raise ValueError(f"dataset {self.label!r}: shape must be (C, H, W), three integers "
                             f">= 1, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        for field, least in (("classes", 2), ("n_train", 1), ("n_test", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"dataset {self.label!r}: {field} must be an integer >= {least}, "
                                 f"got {value!r}")
        if self.augmentation is not None and not isinstance(self.augmentation, Augmentation):
            raise ValueError(f"dataset {self.label!r}: augmentation must be a data.Augmentation "
                             f"or None, got {type(self.augmentation).__name__}")

    @property
    def in_features(self) -> int:
        """Inputs of an MLP on this data: ``C * H * W``."""
        return int(np.prod(self.shape))

    def check_loaded(self, ds: "Dataset") -> "Dataset":
        """``ds`` when its image shape and classes are this spec's (the models are built from
        the spec's), else ValueError naming each difference. Split sizes are not checked: a
        ``data_dir`` may hold fewer images than the spec's full splits."""
        found = {"shape": ds.shape, "classes": ds.n_classes}
        wrong = [f"{k} {v!r} (the spec says {getattr(self, k)!r})" for k, v in found.items()
                 if v != getattr(self, k)]
        if wrong:
            raise ValueError(f"dataset {ds.name!r} loaded with {', '.join(wrong)}")
        return ds


_CIFAR_DA = Augmentation(4, True, "random crop 32x32 from the image zero-padded by 4, then "
                                  "horizontal flip with probability 1/2 (the usual CIFAR recipe)")
DATASETS = {
    "digits": DatasetSpec(
        lambda data_dir, download: digits(), (1, 8, 8), 10, 1437, 360,
        Augmentation(1, False, "random shift by up to 1 pixel in each direction (zero padding); "
                               "no flip: digits are not mirror-symmetric"), "digits"),
    "fashion_mnist": DatasetSpec(
        lambda data_dir, download: fashion_mnist(data_dir, download), (1, 28, 28), 10, 60_000,
        10_000,
        Augmentation(2, True, "random crop 28x28 from the image zero-padded by 2, then "
                              "horizontal flip with probability 1/2"), "Fashion-MNIST"),
    "cifar10": DatasetSpec(lambda data_dir, download: cifar("cifar10", data_dir, download),
                           (3, 32, 32), 10, 50_000, 10_000, _CIFAR_DA, "CIFAR-10"),
    "cifar100": DatasetSpec(lambda data_dir, download: cifar("cifar100", data_dir, download),
                            (3, 32, 32), 100, 50_000, 10_000, _CIFAR_DA, "CIFAR-100"),
}
"""Name -> :class:`DatasetSpec`. digits' splits are our 80 / 20 % split of 1,797. The DA
recipes are CHOICEs (the paper gives none)."""


def register(name: str, spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) dataset ``name`` in :data:`DATASETS`; returns ``spec``."""
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"dataset {name!r} needs a DatasetSpec, got {type(spec).__name__}")
    DATASETS[name] = spec
    return spec


def check(name) -> DatasetSpec:
    """The spec of dataset ``name``, or ValueError naming the allowed ones."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def unregister(name: str) -> DatasetSpec:
    """Remove dataset ``name`` from :data:`DATASETS` and return its spec (what a test
    that registered one does afterwards); ValueError naming the allowed ones when it is absent."""
    check(name)
    return DATASETS.pop(name)


@dataclass
class Dataset:
    """A standardised dataset held as tensors.

    x_train: ``[N_train, C, H, W]`` float32; y_train: ``[N_train]`` int64; likewise the test
    split. ``mean``/``std`` (per channel, pixel units in [0, 1]) are the training set's values used
    for standardisation.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    mean: tuple
    std: tuple

    @property
    def shape(self) -> tuple:
        """One image's shape ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def in_features(self) -> int:
        """Number of inputs of an MLP on this data: ``C * H * W``."""
        return int(np.prod(self.shape))

    def to(self, device) -> "Dataset":
        """The same dataset with every tensor on ``device``."""
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset(self.name, n_classes=self.n_classes, mean=self.mean, std=self.std, **move)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
        """A stratified-by-chance random subset (``None`` keeps a split whole), fixed by ``seed``."""
        g = torch.Generator().manual_seed(seed)

        def pick(x, y, n):
            if n is None or n >= len(y):
                return x, y
            if n < 1:
                raise ValueError(f"subset size {n} must be >= 1")
            idx = torch.randperm(len(y), generator=g)[:n].to(y.device)
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train)
        xte, yte = pick(self.x_test, self.y_test, n_test)
        return Dataset(self.name, xtr, ytr, xte, yte, self.n_classes, self.mean, self.std)


def load(name: str = "digits", data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """Load dataset ``name`` (a key of :data:`DATASETS`) standardised with its training
    statistics.

    ``data_dir`` is where torchvision's files live (or go, with ``download=True``). A dataset that is
    not found raises ValueError naming every folder tried; a bad Fashion-MNIST file, one naming it;
    a loader whose images or classes are not what its spec says, one naming both.
    """
    spec = check(name)
    return spec.check_loaded(spec.load(data_dir, download))


def digits() -> Dataset:
    """scikit-learn's 8x8 digits, standardised (see the module doc)."""
    return standardise("digits", *_digits())


def fashion_mnist(data_dir=None, download: bool = False) -> Dataset:
    """Fashion-MNIST, standardised (see the module doc for where it is looked for)."""
    return standardise("fashion_mnist", *_fashion_mnist(data_dir, download))


def cifar(name: str, data_dir=None, download: bool = False) -> Dataset:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100, standardised, through torchvision."""
    return standardise(name, *_cifar(name, data_dir, download))


def standardise(name, x_train, y_train, x_test, y_test, n_classes) -> Dataset:
    """Standardise images in [0, 1] (``[N, C, H, W]``) per channel with the training statistics."""
    mean = x_train.mean(dim=(0, 2, 3))
    std = x_train.std(dim=(0, 2, 3))
    shift, scale = mean[None, :, None, None], std[None, :, None, None]
    return Dataset(
        name, ((x_train - shift) / scale).contiguous(), y_train,
        ((x_test - shift) / scale).contiguous(), y_test, n_classes,
        tuple(mean.tolist()), tuple(std.tolist()),
    )


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(
        x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    as_x = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    as_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return as_x(xtr), as_y(ytr), as_x(xte), as_y(yte), 10


def _fashion_mnist(data_dir, download):
    from torchvision.datasets import FashionMNIST

    tried = []
    candidates = []
    if data_dir is not None:
        if not download and not Path(data_dir).is_dir():
            raise ValueError(f"Fashion-MNIST: data_dir {str(data_dir)!r} is not a folder (it does "
                             "not exist); give the folder holding the four IDX files, or no "
                             "data_dir to use the system copy "
                             f"({DEBIAN_FASHION_MNIST})")
        candidates.append(Path(data_dir))
    candidates.append(DEBIAN_FASHION_MNIST)
    for folder in candidates:
        found = _fashion_mnist_root(folder)
        tried.append(str(folder))
        if found is not None:
            root, sources = found
            try:
                return _torchvision_split(FashionMNIST, root, False) + (10,)
            except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
                raise ValueError(f"Fashion-MNIST files {', '.join(map(str, sources.values()))} "
                                 f"not readable by torchvision: {exc}") from exc
    if download:
        if data_dir is None:
            raise ValueError("download=True needs a data_dir to download Fashion-MNIST into")
        return _torchvision_split(FashionMNIST, Path(data_dir), True) + (10,)
    raise ValueError(
        "Fashion-MNIST not found; looked in: " + ", ".join(tried)
        + " (the four IDX files, plain or .gz, directly there or under FashionMNIST/raw/). "
        "Install them with `apt-get install dataset-fashion-mnist` (Debian), pass data_dir= a "
        "folder holding them, or pass download=True with a data_dir to let torchvision fetch them."
    )


def _fashion_mnist_root(folder: Path) -> tuple[Path, dict] | None:
    """A torchvision root holding ``FashionMNIST/raw/<file>`` for ``folder`` and the source files
    (``{name: path}``) it was made from, or None when ``folder`` lacks the four files.

    Files already in torchvision's layout are read in place; others (plain, or ``.gz`` as Debian
    ships them) are copied or gunzipped into gflib's cache (see :func:`_into_cache`), since
    torchvision reads the raw files only. Either way every file is checked (:func:`_check_idx`)
    and a bad one raises ValueError naming it.
    """
    for raw in (folder / "FashionMNIST" / "raw", folder):
        if all((raw / f).is_file() for f in FASHION_MNIST_FILES):
            sources = {f: raw / f for f in FASHION_MNIST_FILES}
            if raw.name == "raw" and raw.parent.name == "FashionMNIST":
                _check_idx_files(raw, sources)
                return raw.parent.parent, sources
            return _into_cache(sources, gz=False), sources
        if all((raw / f"{f}.gz").is_file() for f in FASHION_MNIST_FILES):
            sources = {f: raw / f"{f}.gz" for f in FASHION_MNIST_FILES}
            return _into_cache(sources, gz=True), sources
    return None


def _into_cache(sources: dict, gz: bool) -> Path:
    """A torchvision root in gflib's cache holding the files ``sources`` (``{name: path}``), copied
    or (``gz``) gunzipped.

    The entry is keyed on each source's resolved path, size (bytes) and mtime (ns), so a replaced
    or repaired source gets a new entry. Each file is written under a temporary name of its own
    (:func:`gflib.atomic.replacing`), checked, then moved into place; once all four are there, older entries for the same source folder are removed.
    """
    folder = next(iter(sources.values())).parent.resolve()
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sources.values()]
    prefix = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    key = hashlib.sha1(repr(stats).encode()).hexdigest()[:12]
    root = CACHE_DIR / "fashion_mnist" / f"{prefix}-{key}"
    dest = root / "FashionMNIST" / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        target = dest / name
        if target.is_file():
            continue
        with replacing(target) as tmp:
            if gz:
                _gunzip(src, tmp)
            else:
                shutil.copyfile(src, tmp)
            _check_idx(tmp, src)
    _check_idx_files(dest, sources)
    for old in root.parent.glob(f"{prefix}*"):
        if old != root:
            shutil.rmtree(old, ignore_errors=True)
    return root


def _gunzip(src: Path, out_path: Path) -> None:
    """Decompress ``src`` into ``out_path``; a file that is not (complete) gzip raises ValueError
    naming ``src``."""
    try:
        with gzip.open(src, "rb") as fin, open(out_path, "wb") as out:
            shutil.copyfileobj(fin, out)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{src}: not a valid gzip file ({type(exc).__name__}: {exc})") from exc


def _check_idx(path: Path, source: Path) -> int:
    """The item count ``N`` of the uint8 IDX file ``path``, images ``[N, H, W]`` or labels ``[N]``
    (as ``source``'s name says).

    Raises ValueError naming ``source`` (the file as found, e.g. the ``.gz``) unless the file starts
    with the magic number 0x00000803 (images, 3 dims) or 0x00000801 (labels, 1 dim), then the
    sizes as big-endian int32, and holds exactly header + product of the sizes bytes.
    """
    kind, magic, nd = ("images", 0x803, 3) if "-images-" in source.name else ("labels", 0x801, 1)
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 * (nd + 1))
    if len(header) < 4 * (nd + 1):
        raise ValueError(f"{source}: not an IDX {kind} file: {size} bytes, shorter than the "
                         f"{4 * (nd + 1)}-byte header")
    found, *dims = struct.unpack(f">{nd + 1}I", header)
    if found != magic:
        raise ValueError(f"{source}: not an IDX {kind} file: magic number 0x{found:08x}, expected "
                         f"0x{magic:08x} (uint8, {nd} dimension{'s' * (nd > 1)})")
    want = len(header) + math.prod(dims)
    if size != want:
        raise ValueError(f"{source}: IDX {kind} file of shape {dims} must hold {want} bytes, holds "
                         f"{size} ({'truncated' if size < want else 'trailing bytes'})")
    return dims[0]


def _check_idx_files(raw: Path, sources: dict) -> None:
    """Check the four files ``raw/<name>`` made from ``sources`` (:func:`_check_idx`) and that each
    split has as many labels as images; errors name the source files."""
    n = {name: _check_idx(raw / name, src) for name, src in sources.items()}
    for split in ("train", "t10k"):
        images, labels = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        if n[images] != n[labels]:
            raise ValueError(f"{sources[images]} holds {n[images]} images but {sources[labels]} "
                             f"holds {n[labels]} labels")


def _cifar(name, data_dir, download):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, k = (CIFAR10, 10) if name == "cifar10" else (CIFAR100, 100)
    if data_dir is None:
        raise ValueError(f"{name} needs data_dir= (a folder holding {cls.base_folder}/ or one to "
                         "download into with download=True)")
    folder = Path(data_dir)
    if not download and not (folder / cls.base_folder).is_dir():
        raise ValueError(f"{name} not found: no folder {folder / cls.base_folder}; pass "
                         "download=True to let torchvision fetch it")
    try:
        return _torchvision_split(cls, folder, download) + (k,)
    except RuntimeError as exc:  # torchvision: a file missing or failing its md5 check
        raise ValueError(f"{name} not usable in {folder / cls.base_folder}: {exc}") from exc


def _torchvision_split(cls, root: Path, download: bool):
    out = []
    for train in (True, False):
        ds = cls(root=str(root), train=train, download=download)
        data = ds.data
        x = torch.as_tensor(np.asarray(data)).float() / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        out += [x.contiguous(), y]
    return tuple(out)


def epoch_order(n: int, generators: list, device="cpu") -> torch.Tensor:
    """Each run's shuffled order of one epoch over ``n`` examples, ``[K, n]`` int64 on
    ``device``: row r is ``torch.randperm(n, generator=generators[r])``, drawn on the CPU and
    moved in one copy; a step's batch is a slice of columns (the last one may be smaller)."""
    return torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)


def _recipe(name: str) -> Augmentation:
    recipe = check(name).augmentation
    if recipe is None:
        with_recipe = [n for n, s in DATASETS.items() if s.augmentation is not None]
        raise ValueError(f"no augmentation recipe for {name!r}; allowed: {', '.join(with_recipe)}")
    return recipe


def augment_draws(name: str, sizes, generator: torch.Generator, device="cpu") -> tuple:
    """The random draws :func:`augment` makes for batches of ``sizes`` examples in turn, made
    on the CPU ``generator`` in the same order (so the numbers are the same) and moved to
    ``device`` in one copy each: ``(dy [N], dx [N], flip [N] bool or None)``, shifts in pixels,
    ``N = sum(sizes)``; batch i's draws are the slice of its examples."""
    recipe = _recipe(name)
    parts = [_draw(recipe, b, generator) for b in sizes]
    dy, dx, flip = (None if parts[0][i] is None else torch.cat([p[i] for p in parts]).to(device)
                    for i in range(3))
    return dy, dx, flip


def _draw(recipe: Augmentation, b: int, generator: torch.Generator) -> tuple:
    side = 2 * recipe.pad + 1
    dy = torch.randint(0, side, (b,), generator=generator)
    dx = torch.randint(0, side, (b,), generator=generator)
    flip = (torch.rand(b, generator=generator) < 0.5) if recipe.flip else None
    return dy, dx, flip


def augment(x: torch.Tensor, name: str, generator: torch.Generator | None = None,
            draws: tuple | None = None) -> torch.Tensor:
    """Dataset ``name``'s DA recipe (:class:`Augmentation`) applied to a batch ``[B, C, H, W]``
    with tensor ops.

    Each image gets its own shift (and flip); the random draws come from ``generator`` (CPU),
    or are given as ``draws`` (this batch's slice of :func:`augment_draws`, on ``x``'s device).
    """
    recipe = _recipe(name)
    b, _, h, w = x.shape
    if draws is None:
        draws = tuple(None if t is None else t.to(x.device)
                      for t in _draw(recipe, b, generator))
    dy, dx, flip = draws
    pad = recipe.pad
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [B, H]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # [B, W]
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
