"""The `hf-ft` command and the package data behind it: the recipes and configs reach a user who only `pip install`s.

(`accelerate launch -m hf_ft train image_cls` on two processes runs in tests/test_image_cls_recipe.py.)
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from hf_ft import shipped
from hf_ft.cli import main

from .conftest import REPO

REPO_CONFIGS = sorted(REPO.glob("recipes/configs/*/*.yaml")) + sorted(REPO.glob("accelerate_configs/*.yaml"))


def test_every_config_in_the_repo_is_shipped_under_its_name():
    paths = shipped.config_paths()
    assert sorted(paths.values()) == sorted(path.resolve() for path in REPO_CONFIGS)
    assert paths["image_cls/vit_beans"] == REPO / "recipes/configs/image_cls/vit_beans.yaml"
    assert paths["accelerate/multi_gpu"] == REPO / "accelerate_configs/multi_gpu.yaml"
    assert shipped.recipe_path("token_cls") == REPO / "recipes/token_cls.py"  # the README's recipe, not a copy


def test_configs_lists_each_with_its_model_and_data(capsys):
    main(["configs"])
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "/" in line.split(" ")[0]]) == len(REPO_CONFIGS)
    vit = next(line for line in lines if line.startswith("image_cls/vit_beans "))
    assert "google/vit-base-patch16-224-in21k" in vit and "AI-Lab-Makerere/beans" in vit
    assert any(line.startswith("accelerate/fsdp ") and "FSDP" in line for line in lines)


def test_copy_writes_the_configs_and_never_overwrites(tmp_path, capsys):
    main(["configs", "copy", "image_cls/vit_beans.yaml", "accelerate/cpu", "--to", str(tmp_path)])
    assert (tmp_path / "vit_beans.yaml").read_bytes() == (REPO / "recipes/configs/image_cls/vit_beans.yaml").read_bytes()
    assert (tmp_path / "cpu.yaml").read_bytes() == (REPO / "accelerate_configs/cpu.yaml").read_bytes()
    (tmp_path / "vit_beans.yaml").write_text("edited: true\n")
    with pytest.raises(SystemExit) as exit_:
        main(["configs", "copy", "text_cls", "image_cls/vit_beans", "--to", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"{tmp_path / 'vit_beans.yaml'} already exists" in capsys.readouterr().err
    assert (tmp_path / "vit_beans.yaml").read_text() == "edited: true\n"
    assert not (tmp_path / "distilbert_sst2.yaml").exists()  # refused before copying anything
    main(["configs", "copy", "text_cls", "--to", str(tmp_path / "text")])
    assert sorted(path.name for path in (tmp_path / "text").iterdir()) == sorted(
        path.name for path in REPO.glob("recipes/configs/text_cls/*.yaml"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "image_classification"], "no recipe 'image_classification': the recipes are compress, image_cls"),
        (["train", "image_cls", "--config", "image_cls/vit_bean"], "no shipped config 'image_cls/vit_bean'"),
        (["train", "--config", "x.yaml"], "name a recipe: hf-ft train <recipe>"),
        (["configs", "path", "accelerate/tpu"], "no shipped config 'accelerate/tpu'"),
    ],
)
def test_bad_names_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_train_runs_the_recipe_with_a_shipped_config_by_name(tmp_path, monkeypatch, capsys):
    """`--config image_cls/vit_beans` is the shipped file: a bad override fails in the recipe's own parser."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["hf-ft"])
    with pytest.raises(SystemExit) as exit_:
        main(["train", "image_cls", "--config", "image_cls/vit_beans", "--no_such_key", "1"])
    assert exit_.value.code == 2
    assert "no_such_key" in capsys.readouterr().err
    assert sys.argv[0] == str(REPO / "recipes/image_cls.py")  # the recipe ran as the script it is
    with pytest.raises(SystemExit) as exit_:
        main(["train", "text_cls", "--help"])
    assert exit_.value.code == 0
    assert "--text_column_names" in capsys.readouterr().out  # the recipe's own arguments


def test_a_built_wheel_holds_the_recipes_and_configs_and_finds_them_installed(tmp_path):
    """Built from the project's files alone and installed elsewhere: what a `pip install` user gets."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("hf_ft", "recipes", "accelerate_configs", "pyproject.toml", "README.md"):
        subprocess.run(["cp", "-r", str(REPO / name), str(source / name)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("hf_ft-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(path.relative_to(REPO)) for path in (REPO / "hf_ft").rglob("*.py") if "__pycache__" not in path.parts}
    assert sources <= names, f"left out of the wheel: {sorted(sources - names)[:5]} (pyproject's packages list)"
    assert {f"hf_ft/recipes/{path.name}" for path in REPO.glob("recipes/*.py")} <= names
    assert {f"hf_ft/recipes/configs/{p.parent.name}/{p.name}" for p in REPO.glob("recipes/configs/*/*.yaml")} <= names
    assert {f"hf_ft/accelerate_configs/{path.name}" for path in REPO.glob("accelerate_configs/*.yaml")} <= names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    listed = subprocess.run([sys.executable, "-m", "hf_ft", "configs", "path", "image_cls/vit_beans", "accelerate/cpu"],
                            capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)},
                            check=True)
    assert listed.stdout.split() == [str(site / "hf_ft/recipes/configs/image_cls/vit_beans.yaml"),
                                     str(site / "hf_ft/accelerate_configs/cpu.yaml")]
