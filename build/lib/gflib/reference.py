"""The paper's reported numbers (from the talk and the first author's announcement), to set
beside ours, and the labels of its tables.

The correlation table names its datasets (Fashion-MNIST, CIFAR-10, CIFAR-100). The two p-value
tables (sparse > dense per optimizer x variant, and per optimizer x activation) do not: their
slides name no dataset or depth, and their companion accuracy plots show 1-41 % test accuracy,
which fits a 100-class task, not Fashion-MNIST MLPs (about 83-89 %). So every comparison with
them is with another dataset than ours (:data:`UNSTATED`).
"""
from __future__ import annotations

import pandas as pd

UNSTATED = "paper (dataset not stated; probably CIFAR-100)"
"""How the book labels the paper's two p-value tables and every number read off them."""

CLAIMS = (
    "SC-SDC is a fair comparison",
    "EGF tracks generalisation better than the gradient norm in sparse nets",
    "BatchNorm matters more for sparse nets",
    "EWMA optimizers are sensitive to high flow (L2, DA), AdamW avoids the collapse",
    "Swish and PReLU are promising for sparse nets",
    "The results extend to CNNs and magnitude pruning",
)
"""The study's six claims, short, in its order: claim ``k`` is ``CLAIMS[k - 1]``."""

PAPER_NUMBERS = {
    1: "each pair has equal active weights per layer; ~31 inputs per sparse unit at the "
       "narrowest pair",
    2: "EGF margin over the gradient norm, sparse nets, Fashion-MNIST: +0.057 (accuracy), "
       "+0.064 (loss)",
    3: "sparse > dense in 65 % of BN cells, 20 % of the others (dataset not stated)",
    4: "Adam + L2 collapses to 1-5 % on CIFAR-100 with the highest flow; Adagrad, momentum "
       "22-37 %; AdamW 15-28 %",
    5: "sparse > dense with SGD: Swish p = 0.027, PReLU p = 0.005 (dataset not stated)",
    6: "no numbers given",
}
"""The paper's number behind each claim, short, as the results page shows it."""

_CORR = {
    # dataset: {measure: (sparse loss, sparse acc, dense loss, dense acc)}, |Kendall tau|
    "fashion_mnist": {"gf_l1": (.355, .316, .365, .354), "gf_l2": (.282, .292, .285, .329),
                      "egf_l1": (.419, .373, .365, .354), "egf_l2": (.360, .323, .298, .320)},
    "cifar10": {"gf_l1": (.440, .327, .380, .251), "gf_l2": (.447, .308, .355, .290),
                "egf_l1": (.371, .300, .380, .252), "egf_l2": (.451, .332, .363, .287)},
    "cifar100": {"gf_l1": (.355, .385, .325, .319), "gf_l2": (.373, .393, .357, .385),
                 "egf_l1": (.358, .320, .325, .319), "egf_l2": (.402, .396, .359, .382)},
}

_BN_P = {
    "adagrad": (1.000, 1.000, 0.998, 0.239, 0.006, 0.002, 0.001, 0.003),
    "adam": (0.000, 0.055, 0.198, 0.003, 0.079, 0.051, 0.254, 0.166),
    "rmsprop": (0.001, 0.000, 0.300, 0.166, 0.117, 0.021, 0.914, 0.541),
    "sgd": (1.000, 1.000, 1.000, 0.248, 0.000, 0.000, 0.001, 0.003),
    "momentum": (1.000, 1.000, 1.000, 0.999, 0.001, 0.000, 0.007, 0.008),
}
BN_VARIANTS = ("NR", "DA", "L2", "SC", "BN", "DA_BN", "L2_BN", "SC_BN")
"""The paper's BatchNorm table's variants, in its order."""
STUDY_OPTIMIZERS = tuple(_BN_P)
"""The study's five optimizers, in its tables' order."""

_ACT_P = {
    "adagrad": (0.023, 0.005, 0.050, 0.182, 0.568, 0.003),
    "adam": (0.191, 0.182, 0.039, 0.062, 0.005, 0.000),
    "rmsprop": (0.894, 0.167, 0.002, 0.012, 0.997, 0.153),
    "sgd": (0.013, 0.027, 0.005, 0.078, 0.030, 0.056),
    "momentum": (0.212, 0.013, 0.001, 0.078, 0.001, 0.973),
}
ACTIVATIONS = ("relu", "swish", "prelu", "srelu", "sigmoid", "elu")


def egf_correlations(dataset: str = "fashion_mnist") -> pd.DataFrame:
    """The paper's |Kendall tau| table for one dataset: rows = measure, columns = (kind, target).
    ``digits`` (not in the paper) gets Fashion-MNIST's, the nearest of its datasets."""
    key = "fashion_mnist" if dataset == "digits" else dataset
    if key not in _CORR:
        raise ValueError(f"no reported correlations for {dataset!r}; allowed: digits, {', '.join(_CORR)}")
    cols = pd.MultiIndex.from_tuples([("sparse", "test_loss"), ("sparse", "test_acc"),
                                      ("dense", "test_loss"), ("dense", "test_acc")],
                                     names=["kind", "target"])
    return pd.DataFrame.from_dict(_CORR[key], orient="index", columns=cols).rename_axis("measure")


def paper_margin(dataset: str, kind: str = "sparse", target: str = "test_acc") -> float:
    """The paper's EGF margin on ``dataset`` (one of its three): the best EGF measure's |tau|
    minus the best gradient norm's, for ``kind`` nets and ``target``; NaN for another dataset
    (digits)."""
    if dataset not in _CORR:
        return float("nan")
    table = egf_correlations(dataset)[(kind, target)]
    return float(table[["egf_l1", "egf_l2"]].max() - table[["gf_l1", "gf_l2"]].max())


def batchnorm_pvalues() -> pd.DataFrame:
    """The paper's p-values for H1 sparse > dense, optimizer x variant (:data:`UNSTATED`: the
    talk gives neither the dataset nor the depth)."""
    return pd.DataFrame.from_dict(_BN_P, orient="index", columns=list(BN_VARIANTS))


def activation_pvalues() -> pd.DataFrame:
    """The paper's p-values for H1 sparse > dense, optimizer x activation (:data:`UNSTATED`)."""
    return pd.DataFrame.from_dict(_ACT_P, orient="index", columns=list(ACTIVATIONS))
