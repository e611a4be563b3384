"""gflib as a package: the ``gflib`` command, one version, and a wheel that installs and
measures outside this checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import gflib
from gflib import cli

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_lives_in_the_package_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert gflib.__version__.count(".") == 2
    assert project["scripts"]["gflib"] == "gflib.cli:main"


def test_the_command_runs_each_tool_with_its_own_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: gflib {name} ")
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and all(f"\n  {name} " in out for name in cli.COMMANDS)
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"gflib {gflib.__version__}"
    with pytest.raises(SystemExit) as done:
        cli.main(["train"])
    assert done.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err


def test_a_tool_returns_its_exit_status_through_the_command(tmp_path, capsys):
    """``gflib pages`` on a folder with one clean page: 0, as ``python -m gflib.pages`` gives."""
    (tmp_path / "page.html").write_text("<article><p>p = 0.50</p></article>")
    assert cli.main(["pages", str(tmp_path), "--text-only"]) == 0
    assert "1 pages: no noise" in capsys.readouterr().out


MEASURE = """
import gflib, torch
from torch import nn
from torch.nn.utils import prune
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
prune.l1_unstructured(model[0], "weight", amount=0.5)
m = gflib.measure(model, torch.randn(8, 4), torch.randint(0, 2, (8,)))
print(gflib.__file__)
print(sorted(m))
print(sorted(gflib.masks_of(model)))
"""


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_measures_without_the_checkout(tmp_path):
    """Built from this checkout, installed with no index into a new venv (torch and the other
    dependencies from this machine's site-packages), the package imports from the venv, measures
    a masked model from a folder with no book or results, and has the ``gflib`` command."""
    source = tmp_path / "source"  # setuptools builds in the source's build/: not the checkout's
    shutil.copytree(ROOT / "gflib", source / "gflib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True,
                   capture_output=True)
    wheel, = (tmp_path / "dist").glob("gflib-*.whl")
    assert wheel.name.startswith(f"gflib-{gflib.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("gflib/", "gflib-")) for n in names), names
    assert "gflib/chapters/__init__.py" in names and "gflib/cli.py" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(python), "-c", MEASURE], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(venv.resolve()), out[0]
    assert "egf_l2" in out[1] and "gf_l1" in out[1]
    assert out[2] == "['0.weight']"  # the pruned layer, by the user's name
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran
    version = subprocess.run([str(venv / "bin" / "gflib"), "--version"], cwd=elsewhere, env=env,
                             check=True, capture_output=True, text=True).stdout
    assert version.strip() == f"gflib {gflib.__version__}"


def test_the_public_api_is_a_handful_of_documented_names():
    assert 5 <= len(gflib.__all__) <= 15
    for name in gflib.__all__:
        obj = getattr(gflib, name)
        assert name == "__version__" or (obj.__doc__ or "").strip(), name
