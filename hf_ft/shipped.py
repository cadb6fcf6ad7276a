"""The recipes, recipe configs and Accelerate configs that ship inside the package, found and copied by name.

In a clone they are the repo's `recipes/` and `accelerate_configs/` (an editable install maps them); in a wheel they
are the packages `hf_ft.recipes` and `hf_ft.accelerate_configs`. A config's name is `<recipe>/<file stem>`
(`image_cls/vit_beans`); the Accelerate configs are `accelerate/<file stem>` (`accelerate/multi_gpu`).
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

import yaml

from .errors import InputError

ACCELERATE = "accelerate"


def recipes_dir() -> Path:
    return Path(str(importlib.resources.files("hf_ft.recipes")))


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.py") if path.stem != "__init__")


def recipe_path(name: str) -> Path:
    if name not in recipe_names():
        raise InputError(f"no recipe {name!r}: the recipes are {', '.join(recipe_names())}")
    return recipes_dir() / f"{name}.py"


def config_paths() -> dict[str, Path]:
    """Every shipped config by name: the recipes' (`image_cls/vit_beans`), then the Accelerate ones."""
    recipe_configs = {f"{path.parent.name}/{path.stem}": path for path in (recipes_dir() / "configs").glob("*/*.yaml")}
    accelerate_dir = Path(str(importlib.resources.files("hf_ft.accelerate_configs")))
    accelerate = {f"{ACCELERATE}/{path.stem}": path for path in accelerate_dir.glob("*.yaml")}
    return dict(sorted(recipe_configs.items())) | dict(sorted(accelerate.items()))


def config_path(name: str) -> Path:
    """The shipped config `name` (`.yaml` optional); an unknown name is an error listing the names."""
    paths = config_paths()
    name = name.removesuffix(".yaml")
    if name not in paths:
        raise InputError(f"no shipped config {name!r}: `hf-ft configs` lists them (e.g. {next(iter(paths))})")
    return paths[name]


def describe(name: str) -> tuple[str, str]:
    """(model, data) of a recipe config, or ("", its first comment line) of an Accelerate config."""
    path = config_path(name)
    if name.startswith(f"{ACCELERATE}/"):
        return "", path.read_text().splitlines()[0].lstrip("# ")
    values = yaml.safe_load(path.read_text()) or {}
    model = values.get("model_name_or_path") or values.get("teacher_model_name_or_path") or ""
    data = next((values[key] for key in ("dataset_name", "train_dir", "train_file") if values.get(key)), "")
    return str(model), str(data)


def copy_configs(names: list[str], to: Path) -> list[Path]:
    """Copy the named configs, or every config of a recipe (`image_cls`), into `to` as `<stem>.yaml`.

    Refuses before copying anything when a target exists or two names share a file name: nothing is overwritten.
    """
    sources = []
    for name in names:
        if name in recipe_names() or name == ACCELERATE:
            sources += [path for key, path in config_paths().items() if key.startswith(f"{name}/")]
        else:
            sources.append(config_path(name))
    targets = [to / source.name for source in sources]
    clashes = sorted({target.name for target in targets if targets.count(target) > 1})
    if clashes:
        raise InputError(f"two of those configs are both named {clashes[0]}: copy them into separate folders (--to)")
    existing = [str(target) for target in targets if target.exists()]
    if existing:
        raise InputError(f"{existing[0]} already exists: remove it or copy elsewhere with --to DIR")
    to.mkdir(parents=True, exist_ok=True)
    for source, target in zip(sources, targets):
        shutil.copyfile(source, target)
    return targets
