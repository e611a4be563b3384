"""gflib.data: the datasets' on-disk formats, standardisation, the missing-data message,
augmentation.

CIFAR and Fashion-MNIST are exercised through torchvision's real readers on small files this
module writes in the real formats (pickled CIFAR batches, IDX); only the md5 sums torchvision
checks are pointed at the files written here (gflib itself stays strict, see
test_cifar_md5_still_checked).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from gflib import data
from gflib.atomic import TEMPORARY

# ---------------------------------------------------------------------------------------- digits


def test_digits_fixed_split_and_standardised():
    a = data.load("digits")
    b = data.load("digits")
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.n_classes == 10 and a.shape == (1, 8, 8) and a.in_features == 64
    for t in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, t), getattr(b, t))
    # stratified 80/20 split: each class keeps ~its share in the test split
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37
    assert abs(a.x_train.mean().item()) < 1e-5
    assert abs(a.x_train.std().item() - 1.0) < 1e-5
    # mean/std are the raw training statistics (pixels /16 in [0, 1])
    raw = a.x_train * a.std[0] + a.mean[0]
    assert raw.min().item() == pytest.approx(0.0, abs=1e-6)
    assert raw.max().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(raw * 16, (raw * 16).round(), atol=1e-4)  # sklearn's 0..16 levels
    assert 0.25 < a.mean[0] < 0.35


@pytest.mark.parametrize("name", list(data.DATASETS))
def test_each_dataset_on_this_machine_is_what_its_spec_says(name):
    """Every registered dataset whose files are on this machine (the others are skipped,
    saying why)."""
    try:
        ds = data.load(name)
    except ValueError as missing:
        pytest.skip(f"{name} is not on this machine: {missing}")
    check_loaded_dataset(name, ds)


def check_loaded_dataset(name, ds):
    """``ds``, loaded as registered dataset ``name``, is what the spec says (shape, classes,
    images per split, labels 0 .. classes - 1, every class in the training split) and is
    standardised per channel with its training statistics. (tests/test_extending.py calls it
    for a dataset registered at run time.)"""
    spec = data.check(name)
    assert ds.name == name
    assert ds.shape == spec.shape and ds.in_features == spec.in_features
    assert ds.n_classes == spec.classes
    assert (len(ds.y_train), len(ds.y_test)) == (spec.n_train, spec.n_test)
    assert ds.x_train.shape == (spec.n_train, *spec.shape) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(spec.classes))
    assert 0 <= ds.y_test.min() and ds.y_test.max() < spec.classes
    dims = (0, 2, 3)
    assert torch.allclose(ds.x_train.mean(dim=dims), torch.zeros(spec.shape[0]), atol=1e-4)
    assert torch.allclose(ds.x_train.std(dim=dims), torch.ones(spec.shape[0]), atol=1e-4)
    assert len(ds.mean) == len(ds.std) == spec.shape[0]


def test_a_spec_is_checked_and_so_is_what_its_loader_gives(monkeypatch):
    digits = data.check("digits")
    for field, bad, says in (("shape", (8, 8), r"shape must be \(C, H, W\)"),
                             ("shape", (1, 0, 8), "three integers >= 1"),
                             ("classes", 1, "classes must be an integer >= 2, got 1"),
                             ("n_test", 2.5, "n_test must be an integer >= 1, got 2.5"),
                             ("augmentation", (1, False), "data.Augmentation or None")):
        with pytest.raises(ValueError, match=says):
            dataclasses.replace(digits, **{field: bad})
    assert dataclasses.replace(digits, shape=[1, 8, 8]).shape == (1, 8, 8)
    monkeypatch.setitem(data.DATASETS, "digits", dataclasses.replace(digits, classes=12))
    with pytest.raises(ValueError, match=r"'digits' loaded with classes 10 \(the spec says 12\)"):
        data.load("digits")
    with pytest.raises(ValueError, match="needs a DatasetSpec, got tuple"):
        data.register("x", (digits.load, (1, 8, 8)))


def test_unknown_dataset_names_value_and_choices():
    with pytest.raises(ValueError, match=r"'mnist'.*digits, fashion_mnist, cifar10, cifar100"):
        data.load("mnist")


def test_subset_and_batches():
    ds = data.load("digits")
    s1, s2 = ds.subset(100, 50, seed=3), ds.subset(100, 50, seed=3)
    assert len(s1.y_train) == 100 and len(s1.y_test) == 50
    assert torch.equal(s1.x_train, s2.x_train) and torch.equal(s1.y_test, s2.y_test)
    assert not torch.equal(ds.subset(100, 50, seed=4).y_train, s1.y_train)
    order = data.epoch_order(10, [torch.Generator().manual_seed(s) for s in (0, 0, 1)])
    assert order.shape == (3, 10) and order.dtype == torch.int64
    assert all(sorted(row.tolist()) == list(range(10)) for row in order)
    assert torch.equal(order[0], order[1]) and not torch.equal(order[0], order[2])


# ---------------------------------------------------------------------------------- augmentation


def _windows(img, pad):
    """Every crop of ``img`` (C, H, W) zero-padded by ``pad``: the shifts the recipe can give."""
    c, h, w = img.shape
    p = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    return [p[:, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


def test_augment_digits_is_a_one_pixel_shift_without_flip():
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 5] = 1.0  # one lit pixel per image
    out = data.augment(x, "digits", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # the recipe's draws: dy, dx in {0, 1, 2}; output (i, j) = input (i + dy - 1, j + dx - 1)
    g = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 3, (64,), generator=g)
    dx = torch.randint(0, 3, (64,), generator=g)
    for k in range(64):
        lit = (out[k, 0] == 1).nonzero().tolist()
        assert lit == [[3 - (dy[k].item() - 1), 5 - (dx[k].item() - 1)]]
        assert out[k].sum() == 1.0
    assert not torch.equal(out, x)
    moved = (out != x).flatten(1).any(1)
    assert 40 < moved.sum() < 64  # 8/9 of images move; none is mirrored (checked above)


def test_augment_deterministic_per_generator_and_draws_differ():
    x = torch.randn(32, 3, 32, 32)
    a = data.augment(x, "cifar10", torch.Generator().manual_seed(1))
    b = data.augment(x, "cifar10", torch.Generator().manual_seed(1))
    c = data.augment(x, "cifar10", torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_augment_draws_drawn_ahead_give_the_same_batches(name):
    """The training loop draws an epoch's augmentation ahead (one copy to the device, nothing
    from the host per step): batch by batch, the same images as drawing at each batch."""
    shape = data.check(name).shape
    batches = [torch.randn(b, *shape) for b in (5, 5, 3)]
    g = torch.Generator().manual_seed(7)
    one_by_one = [data.augment(x, name, g) for x in batches]
    dy, dx, flip = data.augment_draws(name, [len(x) for x in batches],
                                      torch.Generator().manual_seed(7))
    assert dy.shape == dx.shape == (13,) and (flip is None) == (not data.check(name).augmentation.flip)
    start = 0
    for x, want in zip(batches, one_by_one):
        part = slice(start, start + len(x))
        got = data.augment(x, name, draws=(dy[part], dx[part],
                                           None if flip is None else flip[part]))
        assert torch.equal(got, want)
        start += len(x)


def test_the_recipes_pads_and_flips():
    assert {n: (s.augmentation.pad, s.augmentation.flip) for n, s in data.DATASETS.items()
            if n in ("digits", "fashion_mnist", "cifar10", "cifar100")} == {
        "digits": (1, False), "fashion_mnist": (2, True), "cifar10": (4, True),
        "cifar100": (4, True)}


@pytest.mark.parametrize("name", [n for n, s in data.DATASETS.items() if s.augmentation])
def test_augment_gives_shifted_or_mirrored_crops(name):
    check_augmentation(name)


def check_augmentation(name):
    """Registered dataset ``name``'s DA recipe on 40 random images of its spec's shape: each
    output is a crop of its image zero-padded by the recipe's ``pad``, mirrored about half the
    time where the recipe flips and never where it does not. (tests/test_extending.py calls it
    for a dataset registered at run time.)"""
    spec = data.check(name)
    pad, flip = spec.augmentation.pad, spec.augmentation.flip
    x = torch.randn(40, *spec.shape)
    out = data.augment(x, name, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = moved = 0
    for k in range(40):
        plain = any(torch.equal(out[k], w) for w in _windows(x[k], pad))
        mirror = any(torch.equal(out[k], w) for w in _windows(x[k].flip(-1), pad))
        assert plain or mirror
        flipped += mirror
        moved += not torch.equal(out[k], x[k])
    assert 5 < flipped < 35 if flip else flipped == 0  # flip with probability 1/2
    assert moved > 20


def test_augment_unknown_name():
    with pytest.raises(ValueError, match="'svhn'"):
        data.augment(torch.zeros(1, 1, 8, 8), "svhn", torch.Generator())


# --------------------------------------------------------------------------------- Fashion-MNIST

N_TRAIN, N_TEST = 20, 10


def _idx_images(a: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, *a.shape) + a.astype(np.uint8).tobytes()


def _idx_labels(a: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(a)) + a.astype(np.uint8).tobytes()


def _fmnist_arrays():
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    xte = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    ytr = np.arange(N_TRAIN) % 10
    yte = (np.arange(N_TEST) * 3) % 10
    return xtr, ytr, xte, yte


def _write_fmnist(folder, gz: bool, arrays=None):
    xtr, ytr, xte, yte = arrays or _fmnist_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    blobs = dict(zip(data.FASHION_MNIST_FILES,
                     (_idx_images(xtr), _idx_labels(ytr), _idx_images(xte), _idx_labels(yte))))
    for name, blob in blobs.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(blob)
        else:
            (folder / name).write_bytes(blob)


def _check_fmnist(ds, arrays=None):
    xtr, ytr, xte, yte = arrays or _fmnist_arrays()
    assert ds.x_train.shape == (N_TRAIN, 1, 28, 28) and ds.x_test.shape == (N_TEST, 1, 28, 28)
    assert ds.y_train.tolist() == ytr.tolist() and ds.y_test.tolist() == yte.tolist()
    assert ds.n_classes == 10
    assert ds.mean[0] == pytest.approx(xtr.mean() / 255, abs=1e-6)
    raw_tr = ds.x_train[:, 0] * ds.std[0] + ds.mean[0]
    raw_te = ds.x_test[:, 0] * ds.std[0] + ds.mean[0]
    assert np.allclose(raw_tr.numpy() * 255, xtr, atol=1e-3)
    assert np.allclose(raw_te.numpy() * 255, xte, atol=1e-3)


@pytest.fixture
def no_system_fmnist(tmp_path, monkeypatch):
    """Point the Debian folder and the cache at empty tmp folders."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    return tmp_path


def test_fashion_mnist_plain_under_torchvision_layout(no_system_fmnist):
    root = no_system_fmnist / "d"
    _write_fmnist(root / "FashionMNIST" / "raw", gz=False)
    _check_fmnist(data.load("fashion_mnist", data_dir=root))
    assert not (no_system_fmnist / "cache").exists()  # read in place, nothing copied


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_files_directly_in_folder(no_system_fmnist, gz):
    root = no_system_fmnist / "d"
    _write_fmnist(root, gz=gz)
    _check_fmnist(data.load("fashion_mnist", data_dir=str(root)))
    cached = list((no_system_fmnist / "cache").rglob("train-images-idx3-ubyte"))
    assert len(cached) == 1
    assert not list((no_system_fmnist / "cache").rglob(f"{TEMPORARY}*"))
    _check_fmnist(data.load("fashion_mnist", data_dir=root))  # again, from the cache


def test_fashion_mnist_from_debian_folder(no_system_fmnist, monkeypatch):
    debian = no_system_fmnist / "debian"
    _write_fmnist(debian, gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    _check_fmnist(data.load("fashion_mnist"))


def test_fashion_mnist_missing_names_every_place_and_remedy(no_system_fmnist):
    empty = no_system_fmnist / "empty"
    empty.mkdir()
    _write_fmnist(empty / "FashionMNIST" / "raw", gz=False)
    (empty / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()  # incomplete = absent
    with pytest.raises(ValueError) as err:
        data.load("fashion_mnist", data_dir=empty)
    msg = str(err.value)
    assert str(empty) in msg and str(no_system_fmnist / "no-debian") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg
    with pytest.raises(ValueError, match="download=True needs a data_dir"):
        data.load("fashion_mnist", download=True)


def test_a_data_dir_that_does_not_exist_is_refused_not_replaced(no_system_fmnist,
                                                                   monkeypatch):
    """Before: a mistyped ``data_dir`` silently loaded the system copy instead, so a run said to
    be on the user's files trained on others."""
    debian = no_system_fmnist / "debian"
    _write_fmnist(debian, gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    missing = no_system_fmnist / "my-fmnist"
    with pytest.raises(ValueError, match=f"data_dir '{missing}' is not a folder"):
        data.load("fashion_mnist", data_dir=missing)
    _check_fmnist(data.load("fashion_mnist"))  # no data_dir: the system copy


def _fmnist_file(folder, name, gz):
    return folder / (f"{name}.gz" if gz else name)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_replaced_file_is_read_anew(no_system_fmnist, gz):
    """Same size, new content, later mtime: the new data, and one cache entry left."""
    root = no_system_fmnist / "d"
    _write_fmnist(root, gz=gz)
    _check_fmnist(data.load("fashion_mnist", data_dir=root))
    xtr, ytr, xte, yte = _fmnist_arrays()
    new = (255 - xtr, (ytr + 1) % 10, xte, yte)
    _write_fmnist(root, gz=gz, arrays=new)
    for name in data.FASHION_MNIST_FILES:  # a later mtime even on a coarse-grained clock
        path = _fmnist_file(root, name, gz)
        t = path.stat().st_mtime_ns + 2_000_000_000
        os.utime(path, ns=(t, t))
    _check_fmnist(data.load("fashion_mnist", data_dir=root), new)
    assert len(list((no_system_fmnist / "cache" / "fashion_mnist").iterdir())) == 1


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_repaired_file_is_read_anew(no_system_fmnist, gz):
    """A truncated images file fails; once rewritten whole, loading works (no stale cache)."""
    root = no_system_fmnist / "d"
    _write_fmnist(root, gz=gz)
    xtr, ytr, xte, yte = _fmnist_arrays()
    blob = _idx_images(xtr)[:-28 * 28]  # the header still says N_TRAIN images
    bad = _fmnist_file(root, "train-images-idx3-ubyte", gz)
    bad.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(ValueError, match="truncated") as err:
        data.load("fashion_mnist", data_dir=root)
    assert str(bad) in str(err.value)
    _write_fmnist(root, gz=gz)
    _check_fmnist(data.load("fashion_mnist", data_dir=root))
    assert len(list((no_system_fmnist / "cache" / "fashion_mnist").iterdir())) == 1
    assert not list((no_system_fmnist / "cache").rglob(f"{TEMPORARY}*"))


def _cut_gzip(blob):
    return gzip.compress(blob)[:-100]


@pytest.mark.parametrize("name,gz,make,says", [
    pytest.param("t10k-labels-idx1-ubyte", True, lambda blob: blob, "not a valid gzip file",
                 id="gz-not-gzip"),
    pytest.param("train-images-idx3-ubyte", True, _cut_gzip, "not a valid gzip file",
                 id="gz-cut"),
    pytest.param("train-images-idx3-ubyte", False, lambda blob: blob[:-1], "truncated",
                 id="idx-truncated"),
    pytest.param("train-images-idx3-ubyte", True, lambda blob: gzip.compress(blob[:-1]),
                 "truncated", id="gz-idx-truncated"),
    pytest.param("t10k-labels-idx1-ubyte", False, lambda blob: blob + b"\0", "trailing bytes",
                 id="idx-too-long"),
    pytest.param("t10k-labels-idx1-ubyte", False, lambda blob: blob[:6],
                 "shorter than the 8-byte header", id="idx-header-cut"),
    pytest.param("train-labels-idx1-ubyte", True,
                 lambda blob: gzip.compress(struct.pack(">I", 0x803) + blob[4:]),
                 "magic number 0x00000803", id="gz-wrong-magic"),
])
def test_fashion_mnist_bad_file_named(no_system_fmnist, name, gz, make, says):
    """Not gzip, cut gzip, truncated / overlong IDX, short header, wrong magic: a ValueError naming
    the file; nothing is left in the cache under the bad file's name."""
    root = no_system_fmnist / "d"
    _write_fmnist(root, gz=False)
    blob = (root / name).read_bytes()
    if gz:
        _write_fmnist(root, gz=True)
        for f in data.FASHION_MNIST_FILES:
            (root / f).unlink()
    bad = _fmnist_file(root, name, gz)
    bad.write_bytes(make(blob))
    with pytest.raises(ValueError, match=says) as err:
        data.load("fashion_mnist", data_dir=root)
    assert str(bad) in str(err.value)
    assert not list((no_system_fmnist / "cache").rglob(name))
    assert not list((no_system_fmnist / "cache").rglob(f"{TEMPORARY}*"))


def test_fashion_mnist_bad_file_in_torchvision_layout_named(no_system_fmnist):
    raw = no_system_fmnist / "d" / "FashionMNIST" / "raw"
    _write_fmnist(raw, gz=False)
    bad = raw / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated") as err:
        data.load("fashion_mnist", data_dir=no_system_fmnist / "d")
    assert str(bad) in str(err.value)


def test_fashion_mnist_label_count_mismatch_named(no_system_fmnist):
    root = no_system_fmnist / "d"
    xtr, ytr, xte, yte = _fmnist_arrays()
    _write_fmnist(root, gz=False, arrays=(xtr, ytr, xte, yte[:-1]))
    with pytest.raises(ValueError, match=f"{N_TEST} images but .* {N_TEST - 1} labels") as err:
        data.load("fashion_mnist", data_dir=root)
    assert str(root / "t10k-labels-idx1-ubyte") in str(err.value)


def test_fashion_mnist_torchvision_error_names_files(no_system_fmnist, monkeypatch):
    """Past gflib's own checks, an error of torchvision's reader still names the files."""
    raw = no_system_fmnist / "d" / "FashionMNIST" / "raw"
    _write_fmnist(raw, gz=False)
    bad = raw / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    monkeypatch.setattr(data, "_check_idx", lambda path, source: 0)
    with pytest.raises(ValueError, match="not readable by torchvision") as err:
        data.load("fashion_mnist", data_dir=no_system_fmnist / "d")
    assert str(bad) in str(err.value)


FMNIST_SYSTEM = data.DEBIAN_FASHION_MNIST


def test_fashion_mnist_real_debian_files(tmp_path, monkeypatch):
    if not FMNIST_SYSTEM.is_dir():
        pytest.skip(f"{FMNIST_SYSTEM} not present (apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    ds = data.load("fashion_mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert round(ds.mean[0], 4) == 0.2860
    assert abs(ds.x_train.mean().item()) < 1e-4


# ------------------------------------------------------------------------------------------ CIFAR


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def _write_cifar10(root, per_batch=4, n_test=6):
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    train_list, images, labels = [], [], []
    for i in range(1, 6):
        x = _cifar_images(per_batch, i)
        y = [(i + k) % 10 for k in range(per_batch)]
        name = f"data_batch_{i}"
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": x, "labels": y, "filenames": []}, f)
        train_list.append([name, _md5(folder / name)])
        images.append(x)
        labels += y
    xte, yte = _cifar_images(n_test, 9), [k % 10 for k in range(n_test)]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "test", "data": xte, "labels": yte}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    return (train_list, [["test_batch", _md5(folder / "test_batch")]],
            _md5(folder / "batches.meta"), np.concatenate(images), labels, xte, yte)


def _write_cifar100(root, n_train=7, n_test=5):
    folder = root / CIFAR100.base_folder
    folder.mkdir(parents=True)
    xtr, xte = _cifar_images(n_train, 1), _cifar_images(n_test, 2)
    ytr, yte = [(13 * k) % 100 for k in range(n_train)], [99 - k for k in range(n_test)]
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "fine_labels": y, "coarse_labels": [0] * len(y)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{k}" for k in range(100)]}, f)
    return ([["train", _md5(folder / "train")]], [["test", _md5(folder / "test")]],
            _md5(folder / "meta"), xtr, ytr, xte, yte)


def _point_md5(monkeypatch, cls, train_list, test_list, meta_md5):
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": meta_md5})


def _check_cifar(ds, xtr, ytr, xte, yte, k):
    n, m = len(ytr), len(yte)
    assert ds.x_train.shape == (n, 3, 32, 32) and ds.x_test.shape == (m, 3, 32, 32)
    assert ds.y_train.tolist() == list(ytr) and ds.y_test.tolist() == list(yte)
    assert ds.n_classes == k
    # pickled rows are [R(1024) G(1024) B(1024)], each row-major 32x32
    want_tr = xtr.reshape(n, 3, 32, 32) / 255.0
    want_te = xte.reshape(m, 3, 32, 32) / 255.0
    mean = torch.tensor(ds.mean)[None, :, None, None]
    std = torch.tensor(ds.std)[None, :, None, None]
    assert np.allclose(ds.mean, want_tr.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose((ds.x_train * std + mean).numpy(), want_tr, atol=1e-5)
    assert np.allclose((ds.x_test * std + mean).numpy(), want_te, atol=1e-5)
    assert torch.allclose(ds.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_cifar10_from_real_format(tmp_path, monkeypatch):
    train_list, test_list, meta_md5, xtr, ytr, xte, yte = _write_cifar10(tmp_path)
    _point_md5(monkeypatch, CIFAR10, train_list, test_list, meta_md5)
    ds = data.load("cifar10", data_dir=tmp_path)
    _check_cifar(ds, xtr, ytr, xte, yte, 10)


def test_cifar100_from_real_format(tmp_path, monkeypatch):
    train_list, test_list, meta_md5, xtr, ytr, xte, yte = _write_cifar100(tmp_path)
    _point_md5(monkeypatch, CIFAR100, train_list, test_list, meta_md5)
    ds = data.load("cifar100", data_dir=str(tmp_path))
    _check_cifar(ds, xtr, ytr, xte, yte, 100)


def test_cifar_md5_still_checked(tmp_path):
    """Without pointing the md5s at these files, torchvision rejects them: a ValueError."""
    _write_cifar10(tmp_path)
    with pytest.raises(ValueError, match="cifar10"):
        data.load("cifar10", data_dir=tmp_path)


def test_cifar_missing(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        data.load("cifar100")
    with pytest.raises(ValueError) as err:
        data.load("cifar10", data_dir=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "download=True" in str(err.value)
