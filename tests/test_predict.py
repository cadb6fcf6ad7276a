"""`hf-ft predict`'s inputs, outputs and refusals (the end-to-end runs against each recipe's report live beside the
recipes' tests: image, text, and every variant the compression recipe writes)."""

from __future__ import annotations

import pytest

from hf_ft.cli import main

from . import recipe_runs


@pytest.fixture(scope="module")
def digit_classifier(tmp_path_factory, tiny_vit_dir):
    """An untrained ViT classifier for the ten digits with its processor, saved as transformers saves it (no card)."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    torch.manual_seed(0)
    names = [str(digit) for digit in range(10)]
    model = AutoModelForImageClassification.from_pretrained(
        tiny_vit_dir, num_labels=10, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True,
    )
    path = tmp_path_factory.mktemp("ckpt") / "digits-classifier"
    model.save_pretrained(path)
    AutoImageProcessor.from_pretrained(tiny_vit_dir).save_pretrained(path)
    return path


def test_a_folder_with_splits_gives_the_split_asked_for(digit_classifier, digits_dir, tmp_path):
    predicted = recipe_runs.predict(digit_classifier, digits_dir, tmp_path / "p.jsonl", split="validation",
                                    max_samples=7, top_k=20)
    assert len(predicted.rows) == 7 == predicted.metrics["num_samples"]
    assert all("/validation/" in row["input"] for row in predicted.rows)
    assert all(len(row["top_k_labels"]) == 10 for row in predicted.rows)  # top_k is capped at the labels
    assert all(sum(row["top_k_scores"]) == pytest.approx(1.0, abs=1e-5) for row in predicted.rows)


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["predict", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after any progress bars: one line
    assert err.startswith("error: "), err
    return err


def test_an_existing_output_file_is_refused_before_any_work(digit_classifier, digits_dir, tmp_path, capsys):
    output = tmp_path / "p.csv"
    output.write_text("mine\n")
    err = _error(["--model_name_or_path", str(digit_classifier), "--input", str(digits_dir), "--output_file",
                  str(output)], capsys)
    assert f"{output} already exists" in err and output.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"output_file": "p.txt"}, "--output_file p.txt: write .jsonl or .csv"),
        ({"split": "dev"}, "has splits ['train', 'validation', 'test'], not 'dev'"),
        ({"task": "text-classification"}, "is a folder: this task reads a .csv/.jsonl/.parquet file"),
        ({"task": "summarization"}, "hf-ft predict handles image-classification, text-classification, "
                                    "token-classification, text-generation, object-detection;"),
        ({"label_column_name": "kind"}, "--label_column_name `kind` not found"),
        ({"top_k": 0}, "--top_k must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(digit_classifier, digits_dir, tmp_path, capsys, arguments, message):
    values = {"model_name_or_path": digit_classifier, "input": digits_dir, "output_file": tmp_path / "p.jsonl",
              **arguments}
    assert message in _error([item for key, value in values.items() for item in (f"--{key}", str(value))], capsys)
    assert not (tmp_path / "p.jsonl").exists()


def test_references_the_model_does_not_know_are_named(digit_classifier, digits_dir, tmp_path, capsys):
    image = next((digits_dir / "test" / "3").iterdir())
    listing = tmp_path / "list.csv"
    listing.write_text(f"image,label\n{image},3\n{image},zebra\n")
    err = _error(["--model_name_or_path", str(digit_classifier), "--input", str(listing), "--output_file",
                  str(tmp_path / "p.jsonl")], capsys)
    assert "column `label` holds ['zebra'], which the model does not predict" in err


def test_a_model_of_unknown_task_asks_for_task(tiny_timm_dir, digits_dir, tmp_path, capsys):
    """timm's own save_for_hf records no transformers class, and there is no model card to read."""
    err = _error(["--model_name_or_path", str(tiny_timm_dir), "--input", str(digits_dir), "--output_file",
                  str(tmp_path / "p.jsonl")], capsys)
    assert "cannot tell the task of" in err and "pass --task" in err


def test_an_uncached_hub_dataset_offline_says_so(digit_classifier, tmp_path, capsys):
    err = _error(["--model_name_or_path", str(digit_classifier), "--input", "nobody/no-such-dataset",
                  "--output_file", str(tmp_path / "p.jsonl")], capsys)
    assert "--input nobody/no-such-dataset is no local file or folder" in err
