"""The command line: `hf-ft` (train, predict, configs) and the recipes' own entry point; bad input is one line on stderr, not
a traceback.

    hf-ft train image_cls --config image_cls/demo_digits_efficientnet_lite0 [--key value ...]
    hf-ft predict --model_name_or_path outputs/demo_digits_efficientnet_lite0 --input photos/ --output_file p.csv
    accelerate launch --config_file $(hf-ft configs path accelerate/multi_gpu) -m hf_ft train image_cls --config ...
    hf-ft configs                       # the shipped recipe and Accelerate configs
    hf-ft configs copy image_cls/vit_beans accelerate/single_gpu [--to DIR]
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path
from typing import Any, Callable

from . import shipped
from .errors import InputError


def run_recipe(
    main: Callable[..., Any], dataclass_types: tuple[type, ...], *, defaults: dict[str, Any] | None = None
) -> None:
    """Parse `--config` + command line into `dataclass_types` (over `defaults`), then call `main(*arguments)`.

    Bad input (`InputError`, a missing file, and any `ValueError` while the arguments are parsed: TrainingArguments
    checks its own fields that way) exits with status 2 and a one-line `error: ...` message that names the problem
    and the fix; `HF_FT_TRACEBACK=1` shows the full traceback instead.
    """
    from .args import parse_args  # here, not at the top: `hf-ft configs` need not wait for transformers to import

    try:
        arguments = parse_args(dataclass_types, defaults=defaults)
    except ValueError as err:
        _exit_with(err)
    try:
        main(*arguments)
    except (InputError, FileNotFoundError) as err:
        _exit_with(err)


def _exit_with(err: Exception) -> None:
    if os.environ.get("HF_FT_TRACEBACK") == "1":
        raise err
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever the library wrote
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """`hf-ft`: the installed package's recipes and configs, without the clone."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # everything after the recipe's name is the recipe's, `--help` included
        return _run_shipped(argv[1:])
    if argv[:1] == ["predict"]:
        return _run_shipped(["predict", *argv[1:]])
    parser = argparse.ArgumentParser(
        prog="hf-ft", description="Fine-tuning recipes for the Hugging Face stack.",
        epilog="Under Accelerate: accelerate launch --config_file <file> -m hf_ft train <recipe> --config ...",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,configs}")
    commands.add_parser("train", help="run a recipe: hf-ft train <recipe> --config <file or shipped name> ...")
    commands.add_parser("predict", help="batch predictions from an output dir: hf-ft predict --help")
    configs = commands.add_parser("configs", help="list, locate or copy the shipped configs")
    configs.add_argument("action", nargs="?", choices=("list", "path", "copy"), default="list")
    configs.add_argument("names", nargs="*", help="config names (image_cls/vit_beans), or a recipe's name for all of its")
    configs.add_argument("--to", type=Path, default=Path("."), help="where `copy` writes (default: here)")
    arguments = parser.parse_args(argv)
    try:
        _configs(arguments.action, arguments.names, arguments.to)
    except InputError as err:
        _exit_with(err)


def _run_shipped(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        _exit_with(InputError(f"name a recipe: hf-ft train <recipe> --config ...; recipes: "
                              f"{', '.join(shipped.recipe_names())}"))
    try:
        recipe = shipped.recipe_path(argv[0])
        recipe_args = _shipped_config(argv[1:])
    except InputError as err:
        _exit_with(err)
    sys.argv = [str(recipe), *recipe_args]  # what the recipe sees when run as a script
    runpy.run_path(str(recipe), run_name="__main__")


def _shipped_config(argv: list[str]) -> list[str]:
    """`--config NAME` names a shipped config when no such file exists: `--config image_cls/vit_beans` works anywhere."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv) and not Path(argv[i + 1]).exists():
            argv[i + 1] = str(shipped.config_path(argv[i + 1]))
        elif arg.startswith("--config=") and not Path(arg.split("=", 1)[1]).exists():
            argv[i] = f"--config={shipped.config_path(arg.split('=', 1)[1])}"
    return argv


def _configs(action: str, names: list[str], to: Path) -> None:
    if action == "copy":
        if not names:
            raise InputError("name the configs to copy: hf-ft configs copy image_cls/vit_beans [--to DIR]")
        for path in shipped.copy_configs(names, to):
            print(path)
    elif action == "path":
        for name in names:
            print(shipped.config_path(name))
    else:
        rows = [(name, *shipped.describe(name)) for name in shipped.config_paths()]
        width = max(len(name) for name, _, _ in rows)
        print("Run one: hf-ft train <recipe> --config <name>; copy one to edit: hf-ft configs copy <name>\n")
        for name, model, data in rows:
            print(f"{name:<{width}}  {model}  {data}" if model else f"{name:<{width}}  {data}")
