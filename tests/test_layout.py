"""The package's import directions: recipes -> tasks -> {vision, classification, compress} -> shared core.

The shared core knows no task: importing it loads no task, vision or compression module and not timm. Tasks never
import each other, and the vision and compression layers never import a task, except `hf_ft.compress.variants`: the
compression recipe's workflow, which trains image students and pruned image models through the image task (whose
trainer in turn distils with `hf_ft.compress.distillation`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "hf_ft"
CORE_MODULES = (
    "hf_ft.args",
    "hf_ft.cli",
    "hf_ft.runs",
    "hf_ft.report",
    "hf_ft.hub",
    "hf_ft.peft",
    "hf_ft.speed",
    "hf_ft.models",
    "hf_ft.checkpoints",
    "hf_ft.classification",
    "hf_ft.freezing",
    "hf_ft.metrics",
    "hf_ft.data.sources",
    "hf_ft.data.labels",
    "hf_ft.markdown",
    "hf_ft.text",
    "hf_ft.errors",
)
LAYERS = ("hf_ft.tasks", "hf_ft.vision", "hf_ft.compress")


def _loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    """Top-level names and hf_ft modules in sys.modules after importing `modules` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if m.startswith('hf_ft')})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded_by_core() -> set[str]:
    return _loaded_after_import(CORE_MODULES)


def test_the_shared_core_loads_no_task_vision_or_compression_module(loaded_by_core):
    layered = sorted(m for m in loaded_by_core if m.startswith(tuple(f"{layer}." for layer in LAYERS)) or m in LAYERS)
    assert not layered, f"importing the shared core loads {layered}"


def test_the_shared_core_loads_no_timm(loaded_by_core):
    assert "timm" not in loaded_by_core


def test_the_shared_core_loads_torchvision_only_where_transformers_does(loaded_by_core):
    # transformers.modeling_utils imports its object-detection losses, whose image_utils imports
    # torchvision.transforms whenever torchvision is installed: PreTrainedModel and Trainer bring it along.
    if "torchvision" in loaded_by_core:
        assert "torchvision" in _loaded_after_import(("transformers.modeling_utils",))


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the hf_ft modules (and packages) a source file imports, relative imports resolved."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            names.add(target)
            names |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import text_classification`
    return {name for name in names if name.startswith("hf_ft")}


def _within(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def test_imported_modules_resolves_relative_imports():
    # The checks below are only as good as this parser: it must see every form a task import can take.
    imports = _imported_modules(PACKAGE / "tasks" / "image_classification.py")
    assert "hf_ft.vision.trainer" in imports and "hf_ft.data.sources" in imports


def test_tasks_do_not_import_each_other():
    tasks = sorted((PACKAGE / "tasks").glob("*.py"))
    task_modules = {f"hf_ft.tasks.{path.stem}" for path in tasks if path.name != "__init__.py"}
    assert "hf_ft.tasks.image_classification" in task_modules
    for path in tasks:
        own = f"hf_ft.tasks.{path.stem}"
        others = {name for name in _imported_modules(path) if any(_within(name, t) for t in task_modules - {own})}
        assert not others, f"{path.relative_to(REPO)} imports the task module(s) {sorted(others)}"


def test_only_the_compression_workflow_imports_the_image_task():
    imports = _imported_modules(PACKAGE / "compress" / "variants.py")
    tasks = {name for name in imports if _within(name, "hf_ft.tasks") and name != "hf_ft.tasks"}
    assert tasks and all(_within(name, "hf_ft.tasks.image_classification") for name in tasks), sorted(tasks)
    imported_by_others = {
        path.name for path in (PACKAGE / "compress").glob("*.py") if "hf_ft.compress.variants" in _imported_modules(path)
    }
    assert not imported_by_others, f"{sorted(imported_by_others)} import the workflow: the image task would import itself"


@pytest.mark.parametrize(
    "layer, forbidden",
    [("vision", ("hf_ft.tasks", "hf_ft.compress")), ("compress", ("hf_ft.tasks",)), ("data", LAYERS)],
)
def test_lower_layers_do_not_import_higher_ones(layer, forbidden):
    for path in sorted((PACKAGE / layer).glob("*.py")):
        if path == PACKAGE / "compress" / "variants.py":
            continue
        wrong = {name for name in _imported_modules(path) if any(_within(name, f) for f in forbidden)}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"
