"""README.md's "Extending gflib", done as its recipes say and tested.

NAdam, GELU and a dataset of random tensors are registered in this process by the README's own
recipes, through the registries alone (no file edited; :func:`extended` removes them
afterwards), then put through
the library tests that iterate the registries (their checks, called here for the new entries),
the optimizers chapter's classification and the activations chapter's analysis on smoke grids
of real runs. A chapter kept outside gflib (``outside_chapter.py`` and its notebook, copied
beside each other) is registered here, executed through papermill as ``python -m
gflib.execute`` does, and its verdict read back onto the results page's table.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import jupytext
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from scipy import stats as ss
from torch import nn

import gflib
from gflib import (activations, analysis, chapters, dashboard, data, execute, flops, models,
                   optimizers, plots, train)
from gflib.activations import ActivationSpec
from gflib.chapters import activations as activations_chapter
from gflib.chapters import optimizers as optimizers_chapter
from gflib.config import RunConfig
from gflib.data import Augmentation, DatasetSpec
from gflib.optimizers import OptimizerSpec
from test_activations import check_negative_flow_stacked, check_slopes_match_specs
from test_data import check_augmentation, check_loaded_dataset
from test_masks import check_masks_hold, check_regrows_without_masks
from test_models import check_activation_in_models
from test_stacked import check_activation, check_dataset, check_optimizer

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nadam(params, lr, weight_decay, device):
    """torch's NAdam: an EWMA of squared gradients, like Adam's, with Nesterov momentum."""
    return torch.optim.NAdam(params, lr=lr)


def random_images(data_dir, download):
    """200 training and 100 test images of shape 1x8x8 in 10 classes, the same on every call:
    each class has a random template (uniform in [0, 1]); an image is 0.6 x its class's template
    plus 0.4 x uniform noise, so the classes can be learnt in a few steps."""
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 8, 8, generator=g)

    def split(n):
        y = torch.arange(n) % 10
        return 0.6 * templates[y] + 0.4 * torch.rand(n, 1, 8, 8, generator=g), y

    return data.standardise("random", *split(200), *split(100), 10)


RECIPES = {optimizers: ("nadam", 'gflib.optimizers.register("nadam"'),
           activations: ("gelu", 'gflib.activations.register("gelu"'),
           data: ("random", "gflib.data.register(name")}
"""Registry module -> (the name registered, how README.md's recipe for it starts)."""
WORDS = {"gflib": gflib, "nn": nn, "OptimizerSpec": OptimizerSpec,
         "ActivationSpec": ActivationSpec, "DatasetSpec": DatasetSpec, "build": nadam,
         "name": "random", "load": random_images, "shape": (1, 8, 8), "classes": 10,
         "n_train": 200, "n_test": 100, "label": "random tensors",
         "augmentation": Augmentation(1, True, "a shift by up to 1 pixel, then a flip with "
                                               "probability 1/2")}
"""What the recipes' words stand for here: the builder, and the random dataset's facts."""


def recipe(start: str) -> str:
    """The one inline code span of README.md that starts with ``start``, its line breaks
    undone."""
    spans = re.findall(r"`(" + re.escape(start) + r"[^`]*)`", (ROOT / "README.md").read_text())
    assert len(spans) == 1, (start, spans)
    return " ".join(spans[0].split())


@pytest.fixture(scope="module")
def extended():
    """NAdam, GELU and the random dataset registered by README.md's own recipes (evaluated as
    they are written there) for this module's tests; removed afterwards. Yields ``{registry
    module: spec}``."""
    specs = {}
    for registry, (name, start) in RECIPES.items():
        with pytest.raises(ValueError):
            registry.check(name)
        specs[registry] = eval(recipe(start), dict(WORDS))
        assert registry.check(name) is specs[registry]
    yield specs
    for registry, (name, _) in RECIPES.items():
        assert registry.unregister(name) is specs[registry]


# ----------------------------------------------------------------------------- the registries


@pytest.mark.parametrize("registry, table, name", [
    (optimizers, optimizers.OPTIMIZERS, "adam"), (activations, activations.ACTIVATIONS, "relu"),
    (data, data.DATASETS, "digits"), (models, models.MODELS, "mlp")])
def test_unregister_takes_back_what_register_added(registry, table, name):
    spec = registry.check(name)
    before = list(table)
    assert registry.register(f"{name}_again", spec) is spec
    assert registry.check(f"{name}_again") is spec
    assert registry.unregister(f"{name}_again") is spec
    assert list(table) == before
    with pytest.raises(ValueError, match=f"'{name}_again'; allowed: {before[0]}"):
        registry.unregister(f"{name}_again")
    with pytest.raises(ValueError, match="needs a"):
        registry.register(f"{name}_again", object())


def test_a_chapter_registered_and_unregistered():
    before = chapters.names()
    module = types.SimpleNamespace(NAME="zz_tickets", TITLE="Tickets", CLAIMS=(5,), settings=None,
                                   grid=None, analyse=None, report=None)
    assert chapters.register(module) is module and chapters.get("zz_tickets") is module
    assert chapters.names() == before[:-1] + ["zz_tickets", before[-1]]  # by claim: 5 before 6
    assert chapters.unregister("zz_tickets") is module
    assert chapters.names() == before
    with pytest.raises(ValueError, match="no chapter 'zz_tickets' is registered; registered: "
                                         ".*batchnorm"):
        chapters.unregister("zz_tickets")


def test_the_recipes_make_the_records_the_readme_describes(extended):
    opt, gelu = extended[optimizers], extended[activations]
    assert (opt.build, opt.label, opt.ewma, opt.decoupled_decay, opt.default_lr,
            opt.second_moment) == (nadam, "NAdam", True, False, 0.002, "exp_avg_sq")
    assert isinstance(gelu.build(3), nn.GELU) and gelu.negative_slope == "by shape"
    assert extended[data].load is random_images and extended[data].in_features == 64


def test_configs_and_labels_read_the_new_records(extended):
    c = RunConfig(optimizer="nadam", lr=0.002, activation="gelu", dataset="random",
                  augment=True)
    assert (c.optimizer, c.activation, c.dataset) == ("nadam", "gelu", "random")
    with pytest.raises(ValueError, match="weight_decay"):
        RunConfig(optimizer="nadam", weight_decay=0.1)  # not decoupled: L2 in the loss instead
    assert [analysis.label(n) for n in ("nadam", "gelu", "random")] == ["NAdam", "GELU",
                                                                        "random tensors"]
    assert optimizers.family("nadam") == "EWMA"
    assert not activations.check("gelu").monotone and not activations.check("gelu").has_parameters
    assert "gelu" in activations.by_shape() and "gelu" not in activations.never_negative()


# -------------------------------------------- the library's registry checks, on the new entries


def test_masks_hold_under_nadam(extended):
    check_masks_hold("nadam")
    check_regrows_without_masks("nadam")


def test_stacked_runs_equal_one_by_one_for_each_new_entry(extended, monkeypatch):
    check_optimizer("nadam", monkeypatch)
    check_activation("gelu", monkeypatch)
    check_dataset("random", monkeypatch)


def test_gelu_in_the_models_slopes_and_negative_flow(extended):
    check_activation_in_models("gelu")
    check_negative_flow_stacked("gelu")
    check_slopes_match_specs()


def test_the_slope_check_fails_for_a_spec_that_says_the_wrong_thing(extended, monkeypatch):
    monkeypatch.setitem(activations.ACTIVATIONS, "gelu",
                        dataclasses.replace(activations.check("gelu"), negative_slope="never"))
    with pytest.raises(AssertionError):
        check_slopes_match_specs()


def test_the_random_dataset_loads_augments_and_counts_as_its_spec_says(extended, monkeypatch):
    check_loaded_dataset("random", data.load("random"))
    check_augmentation("random")
    # The smoke preset asks for 400 training and 200 test images; the dataset has 200 and 100.
    smoke = RunConfig(dataset="random", epochs=2, train_subset=400, test_subset=200)
    assert len(train.dataset_for(smoke).y_train) == 200
    assert flops.train_flops(smoke) == flops.step_flops(smoke) * 2 * math.ceil(200 / 128)
    # 19 of its 100 test images right is chance (p = 0.005); 38 of 200 would not be (p < 0.001)
    p100, p200 = (ss.binomtest(k, n, 0.1, alternative="greater").pvalue
                  for k, n in ((19, 100), (38, 200)))
    assert p200 < analysis.AT_CHANCE_P <= p100
    runs = pd.DataFrame({"test_acc": [0.19], "dataset": ["random"], "test_subset": [200]})
    assert analysis.at_chance(runs).tolist() == [True]
    # The dataset cache holds the spec: the same name registered anew is loaded anew.
    fewer = dataclasses.replace(data.check("random"), n_train=20, n_test=10,
                                load=lambda d, dl: random_images(d, dl).subset(20, 10))
    monkeypatch.setitem(data.DATASETS, "random", fewer)
    assert len(train.dataset_for(smoke).y_train) == 20


# ------------------------------------------------------------- the chapters, on smoke grids


def test_the_optimizers_chapter_counts_nadam_in_the_ewma_family(extended, tmp_path,
                                                                 monkeypatch):
    """A smoke grid with NAdam added to the chapter's optimizers, trained on the random
    dataset: every table and test puts NAdam with Adam and AdamW, as its spec says; with a
    spec that says otherwise, the same runs put it with the others."""
    s = optimizers_chapter.TRIMMED
    monkeypatch.setitem(optimizers_chapter.TRIMMED, "optimizers", s["optimizers"] + ("nadam",))
    plan = chapters.plan("optimizers", "smoke", store=tmp_path / "store", dataset="random")
    assert {(c.optimizer, c.lr) for c in plan.configs} >= {("nadam", 0.001), ("nadam", 0.1)}
    assert {optimizers_chapter.variant_name(c.to_dict()) for c in plan.configs
            if c.optimizer == "nadam"} == set(s["variants"])  # not decoupled: AdamW's are not
    results = plan.run(stack=16, progress=False)
    a = optimizers_chapter.analyse(results, plan.preset)
    assert a.families == {"EWMA": ["adam", "adamw", "nadam"], "other": ["momentum"]}
    assert set(a.outcomes.loc[a.outcomes["optimizer"] == "nadam", "family"]) == {"EWMA"}
    assert set(a.cells.loc[a.cells["optimizer"] == "nadam", "family"]) == {"EWMA"}
    for lr in a.lrs:
        harm = a.harm[lr].set_index(["optimizer", "seed"])["family"]
        assert set(harm.loc["nadam"]) == {"EWMA"}
        # the collapse test's units: Adam's and NAdam's seeds against momentum's (AdamW runs
        # only its decay variants, which have no pair without L2 or DA)
        assert (a.collapse[lr]["n"], a.collapse[lr]["n_labelled"]) == (6, 4)
        assert set(a.taus[lr].loc[a.taus[lr]["optimizer"] == "nadam", "family"]) == {"EWMA"}
    sensitivity = [v for v in a.verdicts if v.test.startswith(optimizers_chapter.TESTS[2])]
    assert all("for the EWMA optimizers (Adam, AdamW, NAdam)" in v.sentence
               for v in sensitivity)
    collapse = [v for v in a.verdicts if v.test.startswith(optimizers_chapter.TESTS[0])]
    assert all("test accuracy against" in v.sentence and "% for momentum (" in v.sentence
               for v in collapse)

    monkeypatch.setitem(optimizers.OPTIMIZERS, "nadam",
                        dataclasses.replace(optimizers.check("nadam"), ewma=False))
    other = optimizers_chapter.analyse(results, plan.preset)
    assert other.families == {"EWMA": ["adam", "adamw"], "other": ["momentum", "nadam"]}
    assert all(other.collapse[lr]["n_labelled"] == 2 for lr in other.lrs)


def test_the_activations_chapter_finds_gelus_negative_flow(extended, tmp_path, monkeypatch):
    """A smoke grid with GELU added to the chapter's activations, trained on the random dataset
    (8 epochs, so that nets learn and their flow counts): GELU is in every table, and the
    negative flow the chapter measures is where the specs say a slope can be negative."""
    s = activations_chapter.TRIMMED
    monkeypatch.setitem(activations_chapter.TRIMMED, "activations",
                        s["activations"] + ("gelu",))
    plan = chapters.plan("activations", "smoke", store=tmp_path / "store", dataset="random",
                         epochs=8)
    results = plan.run(stack=16, progress=False)
    a = activations_chapter.analyse(results, plan.preset)
    order = ["relu", "swish", "prelu", "gelu"]
    assert a.counts.diverged == 0 and a.counts.at_chance < a.counts.runs / 2
    assert list(a.cells.p.columns) == order and a.cells.p["gelu"].notna().all()
    assert a.paper["gelu"].isna().all()  # not in the paper's table
    assert set(a.agreement["gelu"]) == {"n/a"}
    share = a.negflow["neg_grad_share"]
    assert (share.loc["gelu"] > 0).all() and (share.loc["swish"] > 0).all()
    assert (share.loc["relu"] == 0).all()
    assert activations_chapter.never_negative_check(a.negflow)
    by_runs = [n for n in order if (share.loc[n] > 0).any()]
    assert set(by_runs) - {"prelu"} == {n for n in order if n in activations.by_shape()}
    assert set(a.negflow_cells["activation"]) == set(order)
    assert [v.test for v in a.verdicts] == list(activations_chapter.TESTS)
    top = a.negflow_cells.dropna().groupby("activation")["neg_grad_share"].median().idxmax()
    assert top in activations.by_shape()
    assert a.verdicts[2].sentence.startswith(
        f"the most gradient flows through negative slopes with {analysis.label(top)} (")
    assert list(activations_chapter.least_slope(activations.curves(order))) == ["swish", "gelu"]


def book_cells(page: str, *needles: str) -> list:
    """The sources of the code cells of ``book/<page>.md`` that contain every one of
    ``needles``, in order."""
    nb = jupytext.read(ROOT / "book" / f"{page}.md")
    return [c.source for c in nb.cells if c.cell_type == "code"
            and all(n in c.source for n in needles)]


def test_the_activations_page_reads_which_slope_down_from_the_specs(extended, monkeypatch):
    """The page's own cells (the slope table and its check) with GELU registered: they run, and
    the caption's list of what slopes down by shape names Swish and GELU."""
    cells = book_cells("activations", "activations.slope_summary") + \
        book_cells("activations", "activations.by_shape()")
    assert len(cells) == 2
    glued = {}
    namespace = {"activations": activations, "chapter": activations_chapter, "plots": plots,
                 "label": analysis.label, "plt": plt, "display": lambda *shown: None,
                 "Markdown": lambda text: text,
                 "glue": lambda name, value, display=True: glued.__setitem__(name, value)}
    for source in cells:
        exec(compile(source, "book/activations.md", "exec"), namespace)
    assert glued["by_shape"] == "Swish, GELU"
    monkeypatch.setitem(activations.ACTIVATIONS, "gelu",
                        dataclasses.replace(activations.check("gelu"), negative_slope="never"))
    with pytest.raises(AssertionError):
        for source in cells:
            exec(compile(source, "book/activations.md", "exec"), namespace)


# --------------------------------------------------------------------- a chapter of one's own


def load_outside_chapter(folder: Path):
    """``outside_chapter.py`` and its notebook copied into ``folder``; the module imported from
    there (a module of no package, as a maintainer's own would be)."""
    for suffix in (".py", ".md"):
        shutil.copy(HERE / f"outside_chapter{suffix}", folder / f"outside_chapter{suffix}")
    spec = importlib.util.spec_from_file_location("outside_chapter", folder / "outside_chapter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def outside(tmp_path):
    """The outside chapter, registered, and its folder; unregistered afterwards."""
    chapters.names()
    module = chapters.register(load_outside_chapter(tmp_path))
    yield module, tmp_path
    chapters.unregister(module.NAME)


def test_a_chapter_kept_outside_gflib_runs_and_shows_on_the_results_page(outside, monkeypatch):
    module, folder = outside
    assert chapters.names()[-1] == module.NAME  # a question of its own: after the study's
    assert chapters.claims()[-1] == module.QUESTION
    store = chapters.results_dir(module, "smoke", folder / "results")
    notebook = execute.execute(folder / "outside_chapter.md", folder / "run",
                               {"preset": "smoke", "results_dir": str(store)})
    executed = json.loads(Path(notebook).read_text())
    answer = [text for c in executed["cells"] if c["cell_type"] == "code"
              for o in c.get("outputs", []) for kind, text in o.get("data", {}).items()
              if kind.endswith("text/markdown")]  # glue's, under papermill.record/
    written = chapters.read_verdicts(chapters.plan(module, "smoke", store=store).verdicts_file)
    assert [(v.claim, v.test, v.scale) for v in written] == [
        ("depth_one", module.TESTS[0], "smoke")]
    v = written[0]
    assert v.n == 6 and v.min_p == pytest.approx(1 / 64)  # three widths x two seeds
    assert any(f"| depth_one: {v.test} | n/a | **{v.status}**" in text for text in answer)

    def no_training(*args, **kwargs):
        raise AssertionError("the results page trained though the notebook wrote its verdicts")

    monkeypatch.setattr(chapters.Plan, "run", no_training)
    shown = dashboard.collect("smoke", store_root=folder / "results", data=folder / "data",
                              names=[module.NAME])
    assert json.dumps([v.to_dict() for v in shown]) == json.dumps([v.to_dict() for v in written])
    df = dashboard.table(shown)
    assert list(df.index)[-1] == module.QUESTION.text
    cell = df.loc[module.QUESTION.text, "smoke"]
    assert f">{v.status}<" in cell and v.effect_text() in cell
    assert 'href="outside_chapter.html#verdict"' in cell
    assert all("not run yet" in df.loc[row, "smoke"] for row in df.index[:-1])
    assert dashboard.headlines(shown) == f"- **{module.QUESTION.text}**: {v.status} at `smoke`"


def test_execute_help_reads_the_notebooks_of_the_book_folder_it_is_given(outside, capsys):
    module, folder = outside
    with pytest.raises(SystemExit) as done:
        execute.main(["--help", "--book", str(folder)])
    assert done.value.code == 0
    listed = capsys.readouterr().out.split("chapters and their parameters", 1)[1]
    assert f"\n  {module.NAME}\n      preset = os.environ.get(\"GFLIB_PRESET\"" in listed
    assert "\n  batchnorm\n      (no notebook " in listed


def test_execute_help_lists_every_chapter_the_environment_names(tmp_path):
    """``python -m gflib.execute --help`` lists every chapter with its notebook's parameters;
    one named in $GFLIB_CHAPTERS (kept outside gflib, its notebook elsewhere) is listed too,
    saying where its notebook was looked for."""
    load_outside_chapter(tmp_path)
    env = dict(os.environ, GFLIB_CHAPTERS="outside_chapter",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "gflib.execute", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("chapters and their parameters", 1)[1]
    for name in chapters.names():
        assert f"\n  {name}\n      preset = os.environ.get(\"GFLIB_PRESET\"" in listed
    assert "\n  outside_chapter\n      (no notebook book/outside_chapter.md" in listed


def test_a_chapter_module_that_cannot_be_imported_is_named(monkeypatch):
    monkeypatch.setenv(chapters.CHAPTERS_ENV, "outside_chapter_nowhere")
    monkeypatch.setattr(chapters, "_FOUND", False)
    with pytest.raises(ValueError, match=r"\$GFLIB_CHAPTERS names chapter module "
                                         "'outside_chapter_nowhere', which cannot be imported"):
        chapters.names()
    with pytest.raises(ValueError, match="outside_chapter_nowhere"):
        chapters.names()  # and again: the discovery is not marked done
