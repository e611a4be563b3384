"""The shared figures are legible: p-value heat maps with a colour bar and outlined significant
cells, no small text, no over-wide figures, and the book's figure style."""
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from gflib import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def table(values):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame(values, index=[f"opt{i}" for i in range(values.shape[0])],
                        columns=[f"var{j}" for j in range(values.shape[1])])


def outlined(ax) -> list:
    """The (row, column) of the cells outlined as significant."""
    return sorted((round(p.get_y()), round(p.get_x())) for p in ax.patches
                  if p.get_gid() == plots.SIGNIFICANT_GID)


def all_texts(fig):
    return [t for t in fig.findobj(plt.Text) if t.get_text() and t.get_visible()]


def test_pvalue_heatmap_outlines_significant_cells_and_has_a_colour_bar():
    fig = plots.pvalue_heatmap(table([[0.01, 0.5], [np.nan, 0.049], [0.05, 0.9]]), "t")
    heat, bar = fig.axes  # the heat map and its colour bar
    assert outlined(heat) == [(0, 0), (1, 1)]  # 0.05 itself and NaN are not outlined
    assert [t.get_text() for t in heat.texts] == ["0.010*", "0.500", "n/a", "0.049*", "0.050",
                                                  "0.900"]
    assert bar.get_ylim() == (0.0, 1.0) and "outlined" in bar.get_ylabel()
    assert min(t.get_fontsize() for t in heat.texts) >= 9
    assert fig.get_size_inches()[0] <= 8


def test_pvalue_heatmap_into_given_axes_draws_no_colour_bar_unless_asked():
    fig, ax = plt.subplots()
    plots.pvalue_heatmap(table([[0.2]]), ax=ax)
    assert len(fig.axes) == 1
    plots.pvalue_heatmap(table([[0.2]]), ax=ax, colorbar=True, alpha=0.3)
    assert len(fig.axes) == 2 and outlined(ax) == [(0, 0)]


def test_pvalue_heatmaps_stack_ours_above_the_papers_with_one_colour_bar():
    ours = table(np.full((5, 8), 0.3))
    ours.iloc[2, 3] = 0.001
    paper = table(np.full((5, 8), 0.02))
    fig = plots.pvalue_heatmaps({"ours": ours, "paper": paper})
    top, bottom, bar = fig.axes
    assert (top.get_title(), bottom.get_title()) == ("ours", "paper")
    assert top.get_position().y0 > bottom.get_position().y1  # stacked, ours on top
    assert outlined(top) == [(2, 3)] and len(outlined(bottom)) == 40
    assert bar.get_ylim() == (0.0, 1.0) and "p < 0.05" in bar.get_ylabel()
    assert fig.get_size_inches()[0] <= 8
    assert min(t.get_fontsize() for ax in (top, bottom) for t in ax.texts) >= 9


def paired(keys, panels="activation"):
    rows = [{panels: k, "dense_width": w, "seed": s, "test_acc_sparse": 0.8, "test_acc_dense": 0.7,
             "mean_egf_l2_sparse": 1.0, "mean_egf_l2_dense": 2.0}
            for k in keys for w in (10, 20, 40) for s in (0, 1)]
    return pd.DataFrame(rows)


def test_figures_have_no_small_text_and_are_not_too_wide():
    figures = [plots.width_panels(paired(list("abcde")), "activation"),
               plots.metric_vs_width(paired(list("abcdefg"), "optimizer"), "optimizer"),
               plots.active_weights_bars([1, 2], [1, 2], [4, 4])]
    for fig in figures:
        assert fig.get_size_inches()[0] <= plots.MAX_WIDTH
        sizes = [t.get_fontsize() for t in all_texts(fig)]
        assert sizes and min(sizes) >= plots.MIN_POINTS


def test_width_panels_labels_the_x_axis_above_an_empty_panel():
    fig = plots.width_panels(paired(list("abcde")), "activation", columns=3)
    third = fig.axes[2]  # nothing below it: its column's last visible panel
    assert third.get_xlabel() == "dense width"
    assert any(t.get_visible() and t.get_text() for t in third.get_xticklabels())


def test_legible_raises_small_text():
    fig, ax = plt.subplots()
    ax.set_title("t", fontsize=5)
    ax.text(0, 0, "cell", fontsize=6)
    plots._legible(fig)
    assert ax.title.get_fontsize() == plots.MIN_POINTS
    assert ax.texts[0].get_fontsize() == plots.MIN_CELL_POINTS


def test_book_style_sets_rc_and_is_a_no_op_outside_ipython():
    assert plots.book_style() == ()
    assert matplotlib.rcParams["savefig.dpi"] == 150
    assert matplotlib.rcParams["xtick.labelsize"] == 9


def test_book_style_makes_ipython_show_figures_as_svg():
    """In an IPython shell with the inline backend (as in a kernel myst-nb or papermill runs),
    a figure displays as image/svg+xml and no longer as PNG, also when pyplot is imported only
    after book_style. A subprocess: the shell is a process-wide singleton."""
    code = """
import os
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_cell("from gflib import plots; formats = plots.book_style()")
shell.run_cell("import matplotlib.pyplot as plt; fig = plt.figure(); plt.plot([1, 2])")
data, _ = shell.display_formatter.format(shell.user_ns["fig"])
print(shell.user_ns["formats"], sorted(k for k in data if k.startswith("image/")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "('svg',) ['image/svg+xml']"


def test_lines_by_column_draws_one_line_per_column():
    table = pd.DataFrame({"a": [1.0, 0.5], "b": [1.0, 0.2]}, index=[1, 2])
    fig = plots.lines_by_column(table, "epoch", "density", log=True, step=True)
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.get_lines()] == ["a", "b"]
    assert ax.get_yscale() == "log"
    plt.close(fig)


def test_flow_accuracy_scatter_leaves_out_diverged_runs():
    runs = pd.DataFrame({"optimizer": ["adam", "adam", "sgd"], "method": ["x", "y", "x"],
                         "mean_egf_l2": [1.0, 2.0, 3.0], "test_acc": [0.5, 0.6, 0.7],
                         "diverged": [False, True, False]})
    fig = plots.flow_accuracy_scatter(runs, colour="method", panels="optimizer")
    assert [ax.get_title() for ax in fig.axes] == ["adam", "sgd"]
    points = [len(c.get_offsets()) for ax in fig.axes for c in ax.collections]
    assert points == [1, 1]  # the diverged adam run is not drawn
    plt.close(fig)
