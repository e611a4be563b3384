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
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
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


def curve_frame(groups=(False, True), runs=5, epochs=(0, 5, 10)):
    rng = np.random.default_rng(0)
    rows = []
    for gi, group in enumerate(groups):
        for r in range(runs):
            for e in epochs:
                rows.append({"key": f"{group}-{r}", "batchnorm": group, "epoch": e,
                             "value": 10.0 ** (gi + rng.normal(0, 0.1))})
    return pd.DataFrame(rows)


def test_flow_over_training_draws_one_median_line_and_band_per_group_not_per_run():
    curves = curve_frame()
    curves.loc[(curves["key"] == "True-0") & (curves["epoch"] == 10), "value"] = np.nan
    fig = plots.flow_over_training(curves, by="batchnorm",
                                   label_of=lambda bn: "BN" if bn else "no BN")
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # 10 runs, 2 groups
    assert len(ax.collections) == 2  # one shaded band per group
    assert ax.get_yscale() == "log"
    no_bn = curves[~curves["batchnorm"]].groupby("epoch")["value"].median()
    assert np.allclose(ax.lines[0].get_ydata(), no_bn.values)
    assert list(ax.lines[0].get_xdata()) == [0, 5, 10]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("no BN") and "5 runs" in labels[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    q25 = curves[~curves["batchnorm"]].groupby("epoch")["value"].quantile(0.25)
    assert np.isclose(band.min(), q25.min())


def marked(ax, marker):
    """The line of ``ax`` drawn with ``marker`` (None if there is none)."""
    found = [line for line in ax.lines if line.get_marker() == marker]
    return found[0] if found else None


def depth_mean_frame(measures=("gf_l1", "gf_l2", "egf_l1", "egf_l2")):
    """A table in the form of gflib.correlations.egf_margins' second one: each measure's mean
    |tau| over depths (0.1, 0.2, ... by measure) with its bootstrap interval of that mean
    |tau| (0.05 below to 0.15 above)."""
    rows = []
    for kind in ("sparse", "dense"):
        for i, m in enumerate(measures):
            for target in ("test_loss", "test_acc"):
                abs_tau = 0.1 + 0.1 * i
                rows.append({"kind": kind, "target": target, "measure": m, "abs_tau": abs_tau,
                             "ci_low": abs_tau - 0.05, "ci_high": abs_tau + 0.15, "n": 40})
    return pd.DataFrame(rows)


def test_tau_forest_one_row_per_measure_ours_with_interval_and_the_papers_marker():
    """Changed on purpose: the forest shows the paper's form, the mean |tau| over depths with
    a bootstrap interval of that mean (gflib.correlations.egf_margins), drawn as given."""
    from gflib.reference import egf_correlations

    paper = egf_correlations("fashion_mnist")
    fig = plots.tau_forest(depth_mean_frame(), paper, kinds="sparse")
    assert len(fig.axes) == 2 and fig.get_size_inches()[0] <= plots.MAX_WIDTH
    loss, acc = fig.axes
    assert [t.get_text() for t in loss.get_yticklabels()] == ["gf_l1", "gf_l2", "egf_l1",
                                                             "egf_l2"]
    ours, ref = marked(acc, "o"), marked(acc, "D")
    assert np.allclose(ours.get_xdata(), [0.1, 0.2, 0.3, 0.4])  # the mean |tau|
    assert np.allclose(ref.get_xdata(), paper[("sparse", "test_acc")].to_numpy())
    assert ref.get_marker() != ours.get_marker()
    # each interval as given, asymmetric about the point: egf_l2 0.35..0.55, gf_l1 0.05..0.25
    segments = sorted(sorted(s[:, 0]) for c in acc.collections for s in c.get_segments())
    assert np.allclose(segments, [[0.05, 0.25], [0.15, 0.35], [0.25, 0.45], [0.35, 0.55]])
    assert acc.get_xlabel() == "mean |tau| over depths, test accuracy"
    assert min(t.get_fontsize() for t in all_texts(fig)) >= plots.MIN_POINTS


def test_tau_forest_draws_a_row_of_panels_per_kind_each_with_its_own_paper_values():
    from gflib.reference import egf_correlations

    paper = egf_correlations("fashion_mnist")
    frame = depth_mean_frame()
    frame.loc[frame["kind"] == "dense", "abs_tau"] *= 2
    frame.loc[frame["kind"] == "dense", ["ci_low", "ci_high"]] = np.nan
    fig = plots.tau_forest(frame, paper)
    assert [ax.get_title() for ax in fig.axes] == [
        "sparse nets: test loss", "sparse nets: test accuracy",
        "dense nets: test loss", "dense nets: test accuracy"]
    dense_acc = fig.axes[3]
    assert np.allclose(marked(dense_acc, "o").get_xdata(), [0.2, 0.4, 0.6, 0.8])
    assert np.allclose(marked(dense_acc, "D").get_xdata(),
                       paper[("dense", "test_acc")].to_numpy())
    assert np.allclose(marked(fig.axes[1], "o").get_xdata(), [0.1, 0.2, 0.3, 0.4])
    # no interval for the dense nets: no finite error bar there
    dense_segments = [s for c in dense_acc.collections for s in c.get_segments()]
    assert len(dense_segments) == 4 and not any(np.isfinite(s).any() for s in dense_segments)
    assert fig.axes[0].get_xlabel() == "" and fig.axes[2].get_xlabel().startswith("mean |tau|")
    assert fig.get_size_inches()[0] <= plots.MAX_WIDTH


def test_tau_forest_adds_the_all_gradient_rows_and_works_without_the_paper():
    fig = plots.tau_forest(depth_mean_frame(("egf_l1", "gfall_l2", "gf_l1")), None, kinds="dense",
                           targets=("test_acc",))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gf_l1", "egf_l1", "gfall_l2"]
    assert marked(ax, "o") is not None and marked(ax, "D") is None  # ours only


def test_chapter_one_report_shows_the_tau_forest_of_a_stored_summary(monkeypatch):
    import IPython.display

    from gflib import presets
    from gflib.chapters import sc_sdc_and_egf as chapter
    from test_chapters import fake_results

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.extend(a))
    monkeypatch.setattr(chapter, "show_verdicts", lambda verdicts: None)
    chapter.report(chapter.analyse(fake_results(), presets.get("book")), "fake")
    figures = [x for x in shown if isinstance(x, plt.Figure)]
    assert len(figures) == 1
    assert [t.get_text() for t in figures[0].axes[0].get_yticklabels()][:4] == [
        "gf_l1", "gf_l2", "egf_l1", "egf_l2"]
    assert "fake" in figures[0]._suptitle.get_text()


def test_pvalue_heatmaps_name_the_columns_once_below_the_last_map():
    ours = pd.DataFrame([[0.01, 0.5]], index=["adam"],
                        columns=pd.Index([1, 2], name="depth"))
    paper = pd.DataFrame([[0.2, 0.04]], index=["adam"], columns=[1, 2])
    fig = plots.pvalue_heatmaps({"ours": ours, "paper": paper})
    maps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_xlabel() for ax in maps] == ["", "depth"]
    assert all(t.get_rotation() == 0 for t in maps[0].get_xticklabels())  # short labels stay level
    wide = pd.DataFrame([[0.3]], index=["sgd"], columns=pd.Index(["L2_BN"], name="variant"))
    single = plots.pvalue_heatmap(wide, "one")
    assert single.axes[0].get_xlabel() == "variant"
    assert single.axes[0].get_xticklabels()[0].get_rotation() == 40


def test_flow_vs_accuracy_one_panel_per_lr_rings_the_named_variants_without_text():
    rows = []
    for lr in (0.001, 0.1):
        for optimizer, family in (("adam", "EWMA"), ("sgd", "other")):
            for i, variant in enumerate(("BN", "L2_BN")):
                rows.append({"lr": lr, "kind": "sparse", "optimizer": optimizer,
                             "variant": variant, "family": family, "egf": 10.0 ** -i,
                             "acc": 0.5 + 0.1 * i})
    cells = pd.DataFrame(rows)
    fig = plots.flow_vs_accuracy(cells, labelled=("L2_BN",), labelled_optimizers=("adam",))
    assert [ax.get_title() for ax in fig.axes] == ["lr 0.001", "lr 0.1"]
    assert not any(ax.texts for ax in fig.axes)
    ring = [c for c in fig.axes[0].collections
            if len(c.get_offsets()) and c.get_sizes()[0] == 110]
    assert len(ring) == 1 and np.allclose(ring[0].get_offsets(), [[-1.0, 60.0]])
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["adam", "sgd", "adam: L2_BN"]


def test_a_log_axis_shorter_than_a_decade_gets_plain_labels_that_do_not_collide():
    fig, (short, long) = plt.subplots(1, 2, figsize=(4, 2))
    short.plot([1, 2], [0.14, 0.24])
    long.plot([1, 2], [0.001, 0.5])
    for ax in (short, long):
        ax.set_yscale("log")
    plots._legible(fig)
    fig.canvas.draw()
    low, high = short.get_ylim()
    shown = [t.get_text() for t, v in zip(short.get_yticklabels(), short.get_yticks())
             if low <= v <= high]
    assert shown == ["0.15", "0.2"]
    assert not any(t.get_text() for t in short.yaxis.get_minorticklabels())
    assert all("10^" in t.get_text() for t in long.get_yticklabels())  # decades: unchanged


def test_show_displays_a_figure_with_its_caption_or_glues_both(monkeypatch):
    import IPython.display
    import myst_nb

    shown, glued = [], {}
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.extend(a))
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: glued.update(
        {name: (obj, display)}))
    fig = plt.figure()
    plots.show(fig, "gain", "BatchNorm helps by **+3.0** points.")
    assert shown[0] is fig and shown[1].data == "*BatchNorm helps by **+3.0** points.*"
    assert not glued and not plt.fignum_exists(fig.number)
    fig2 = plt.figure()
    with plots.glued("stored_fmnist"):
        plots.show(fig2, "gain", "caption")
    plots.show(plt.figure(), "after", "shown again")
    assert list(glued) == ["stored_fmnist_gain", "stored_fmnist_gain_caption"]
    assert glued["stored_fmnist_gain"] == (fig2, False)
    assert glued["stored_fmnist_gain_caption"][0].data == "caption"
    assert len(shown) == 4  # outside the block figures are displayed again
