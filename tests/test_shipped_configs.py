"""Every shipped config runs end to end, offline, for a few steps: its Hub (or demo) model replaced by a tiny local
model of the same family, its Hub dataset by a local stand-in with the same classes and columns.

Each config goes through the recipe's real command line (`recipes/<recipe>.py --config <yaml>`, in this process),
with only the model, data, output dir and run length replaced; everything else is the shipped file as it is.
"""

from __future__ import annotations

import json
import random
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoConfig

from .conftest import REPO

pytestmark = pytest.mark.slow

CONFIGS = REPO / "recipes" / "configs"
BEANS_LABELS = ["angular_leaf_spot", "bean_rust", "healthy"]  # AI-Lab-Makerere/beans, 3 classes
# What a few steps means: the length of the run, and of the compression recipe's measurements.
SHORT_RUN = {"max_steps": 3, "logging_steps": 1}
SHORT_COMPRESSION = {"calibration_samples": 16, "latency_repeats": 1, "latency_batch_sizes": [1]}
# Config -> (model stand-in, data stand-in, student stand-in for compress configs). Teachers of compress configs are
# the outputs of the image configs that train them, as in the README.
STAND_INS = {
    "image_cls/vit_beans.yaml": ("vit", "beans_hub", None),
    "image_cls/vit_beans_lora.yaml": ("vit", "beans_hub", None),
    "image_cls/convnext_beans_timm.yaml": ("timm_convnext", "beans_hub", None),
    "image_cls/resnet50_imagefolder_timm.yaml": ("timm_resnet", "beans_imagefolder", None),
    "image_cls/demo_digits_efficientnet_lite0.yaml": ("lite0", "digits", None),
    "image_cls/demo_digits_efficientnet_lite0_lora.yaml": ("lite0", "digits", None),
    "image_cls/demo_digits_imbalanced.yaml": ("lite0", "digits_imbalanced", None),
    "image_cls/demo_digits_imbalanced_class_weight.yaml": ("lite0", "digits_imbalanced", None),
    "compress/vit_beans_to_deit_small.yaml": ("image_cls/vit_beans.yaml", "beans_hub", "vit"),
    "compress/resnet50_to_resnet18_beans.yaml": ("image_cls/resnet50_imagefolder_timm.yaml", "beans_hub", "timm_resnet"),
    "compress/demo_digits.yaml": ("image_cls/demo_digits_efficientnet_lite0.yaml", "digits", "mobilenetv3"),
    "text_cls/demo_bbc_news_minilm.yaml": ("tiny_bert", "bbc_news_files", None),
    "text_cls/distilbert_sst2.yaml": ("tiny_bert", "sst2_hub", None),
    "text_cls/distilbert_imdb.yaml": ("tiny_bert", "imdb_hub", None),
    "text_cls/bert_go_emotions.yaml": ("tiny_bert", "go_emotions_hub", None),
    "token_cls/demo_wnut16_minilm.yaml": ("tiny_bert_tagger", "wnut16_files", None),
    "token_cls/bert_base_cased_conll2003.yaml": ("tiny_bert_tagger", "conll2003_hub", None),
    "sft/demo_bbc_news_smollm2.yaml": ("tiny_llama", "bbc_chat_files", None),
    "sft/qwen2_5_0_5b_capybara_lora.yaml": ("tiny_llama", "capybara_hub", None),
    "sft/llama3_1_8b_ultrachat_fsdp.yaml": ("tiny_llama", "ultrachat_hub", None),
    "sft/llama3_1_8b_ultrachat_qlora.yaml": ("tiny_llama", "ultrachat_hub", None),
    "object_detection/demo_digit_canvases_rtdetr_lite0.yaml": ("tiny_detector", "canvases_coco", None),
    "object_detection/rtdetr_v2_r50vd_cppe5.yaml": ("tiny_detector", "cppe5_hub", None),
    "object_detection/rtdetr_v2_r18vd_coco_subset.yaml": ("tiny_coco_detector", "coco_folders", None),
}
# Shipped configs that need a CUDA GPU (QLoRA): without one, they must stop with the one-line error that says so.
NEEDS_GPU = {"sft/llama3_1_8b_ultrachat_qlora.yaml"}


def test_every_shipped_config_has_a_stand_in():
    shipped = {path.relative_to(CONFIGS).as_posix() for path in CONFIGS.glob("*/*.yaml")}
    assert shipped == set(STAND_INS)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, digits_dir, tiny_vit_dir, tiny_timm_dir):
    """Local models and data by the names STAND_INS uses."""
    import timm

    from hf_ft.assets import convert_efficientnet_lite0, export_imbalanced_digits, write_untrained_student

    root = tmp_path_factory.mktemp("stand_ins")
    convnext = timm.create_model("test_convnext", num_classes=5)
    convnext.pretrained_cfg = {**convnext.pretrained_cfg, "input_size": (3, 32, 32), "test_input_size": (3, 32, 32)}
    timm.models.save_for_hf(convnext, root / "test_convnext")
    beans_folders = _beans_imagefolder(digits_dir, root / "beans_imagefolder")
    return {
        "vit": tiny_vit_dir,
        "timm_resnet": tiny_timm_dir,
        "timm_convnext": root / "test_convnext",
        "lite0": convert_efficientnet_lite0(root / "efficientnet_lite0"),
        "mobilenetv3": write_untrained_student(root / "student_mobilenetv3"),
        "digits": {"train_dir": digits_dir / "train", "validation_dir": digits_dir / "validation",
                   "test_dir": digits_dir / "test"},
        "digits_imbalanced": {split: export_imbalanced_digits(root / "digits_imbalanced") / split.removesuffix("_dir")
                              for split in ("train_dir", "validation_dir", "test_dir")},
        "beans_imagefolder": {"train_dir": beans_folders / "train", "test_dir": beans_folders / "test"},
        "beans_hub": {"dataset_name": _beans_hub_layout(beans_folders, root / "beans_hub")},
        **_text_stand_ins(root / "text"),
        **_token_stand_ins(root / "token"),
        **_sft_stand_ins(root / "sft"),
        **_detection_stand_ins(root / "detection"),
    }


def _beans_imagefolder(digits_dir: Path, root: Path) -> Path:
    """Real digit images (0, 1, 2) under beans' three class names: train/validation/test/<class>/*.png."""
    for split, count in (("train", 12), ("validation", 4), ("test", 4)):
        for digit, label in enumerate(BEANS_LABELS):
            target = root / split / label
            target.mkdir(parents=True)
            for file in sorted((digits_dir / split / str(digit)).glob("*.png"))[:count]:
                shutil.copy(file, target / file.name)
    return root


def _beans_hub_layout(folders: Path, root: Path) -> Path:
    """The Hub dataset's layout: train/validation/test splits with an `image` Image and a `labels` ClassLabel column."""
    from datasets import ClassLabel, Dataset, Features, Image, Value

    features = Features({"image_file_path": Value("string"), "image": Image(), "labels": ClassLabel(names=BEANS_LABELS)})
    root.mkdir()
    for split in ("train", "validation", "test"):
        files = sorted((folders / split).glob("*/*.png"))
        rows = {"image_file_path": [str(f) for f in files], "image": [str(f) for f in files],
                "labels": [BEANS_LABELS.index(f.parent.name) for f in files]}
        Dataset.from_dict(rows, features=features).to_parquet(str(root / f"{split}.parquet"))
    return root


# The label names of the text data stand-ins, as the Hub datasets (and the demo's BBC News) name them.
TEXT_LABELS = {
    "bbc_news_files": ["business", "entertainment", "politics", "sport", "tech"],
    "sst2_hub": ["negative", "positive"],
    "imdb_hub": ["neg", "pos"],
    "go_emotions_hub": [
        "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
        "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
        "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
    ],
}


def _text_stand_ins(root: Path) -> dict:
    """The tiny BERT of the text recipe's tests, and local data with each text config's splits, columns and labels."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    from .test_text_cls_recipe import KEYWORDS, build_tiny_bert, sentence, write_csv

    rng = random.Random(0)
    root.mkdir()

    def texts(count: int) -> list[str]:
        return [sentence(rng, rng.choice(list(KEYWORDS))) for _ in range(count)]

    def binary(names: list[str], column: str, count: int, hidden: bool = False) -> Dataset:
        labels = [-1 if hidden else i % 2 for i in range(count)]  # -1: a split whose labels the Hub hides
        features = Features({column: Value("string"), "label": ClassLabel(names=names)})
        return Dataset.from_dict({column: texts(count), "label": labels}, features=features)

    def go_emotions(count: int) -> Dataset:  # every label in every split, a third of the rows with two
        labels = [[i % 28] + ([(i + 5) % 28] if i % 3 == 0 else []) for i in range(count)]
        features = Features({"text": Value("string"), "labels": List(ClassLabel(names=TEXT_LABELS["go_emotions_hub"])),
                             "id": Value("string")})
        return Dataset.from_dict({"text": texts(count), "labels": labels, "id": [f"e{i}" for i in range(count)]},
                                 features=features)

    bbc = {}
    for split, count in (("train", 40), ("validation", 10), ("test", 10)):
        names = TEXT_LABELS["bbc_news_files"]
        rows = [{"text": text, "label": names[i % 5]} for i, text in enumerate(texts(count))]
        bbc[f"{split}_file"] = write_csv(root / f"bbc_{split}.csv", rows)
    return {
        "tiny_bert": build_tiny_bert(root),
        "bbc_news_files": bbc,
        "sst2_hub": {"dataset_name": _hub_dataset(root / "sst2", "default", {
            "train": binary(TEXT_LABELS["sst2_hub"], "sentence", 40),
            "validation": binary(TEXT_LABELS["sst2_hub"], "sentence", 20),
            "test": binary(TEXT_LABELS["sst2_hub"], "sentence", 20, hidden=True),
        })},
        "imdb_hub": {"dataset_name": _hub_dataset(root / "imdb", "plain_text", {
            "train": binary(TEXT_LABELS["imdb_hub"], "text", 40),
            "test": binary(TEXT_LABELS["imdb_hub"], "text", 20),
            "unsupervised": binary(TEXT_LABELS["imdb_hub"], "text", 20, hidden=True),
        })},
        "go_emotions_hub": {"dataset_name": _hub_dataset(root / "go_emotions", "simplified", {
            "train": go_emotions(56), "validation": go_emotions(28), "test": go_emotions(28),
        })},
    }


def _sft_stand_ins(root: Path) -> dict:
    """The tiny Llama of the SFT tests, and chat data in each SFT config's layout: local jsonl splits (the demo), a
    Hub repo with train and test (Capybara), one with train_sft and test_sft (UltraChat)."""
    from datasets import Dataset

    from .tiny_llm import build_tiny_llama, colour_conversations, write_jsonl

    root.mkdir()
    local = {f"{split}_file": write_jsonl(root / f"{split}.jsonl", colour_conversations(16, seed))
             for seed, split in enumerate(("train", "validation", "test"))}
    chats = Dataset.from_list(colour_conversations(24, 3))
    return {
        "tiny_llama": build_tiny_llama(root / "tiny_llama"),
        "bbc_chat_files": local,
        "capybara_hub": {"dataset_name": _hub_dataset(root / "capybara", "default", {"train": chats, "test": chats})},
        "ultrachat_hub": {"dataset_name": _hub_dataset(
            root / "ultrachat", "default", {"train_sft": chats, "test_sft": chats})},
    }


CPPE5_LABELS = ["Coverall", "Face_Shield", "Gloves", "Goggles", "Mask"]


def _detection_stand_ins(root: Path) -> dict:
    """A tiny RT-DETR (one placeholder class, as the demo's) and one whose labels are the COCO stand-in's names (as
    a COCO checkpoint knows COCO's); COCO folders in the demo's layout (annotations apart) and the COCO download's;
    a Hub repo in CPPE-5's layout (train and test; ClassLabel categories, xywh boxes, width and height columns)."""
    import json as json_module

    from datasets import ClassLabel, Dataset, Features, Image, List, Value

    from .tiny_detector import build_tiny_detector, write_coco

    root.mkdir()
    coco_names = ("person", "bicycle", "car", "dog", "cat", "bus", "train", "truck", "boat", "bird")
    splits = {split: write_coco(root / "canvases" / split, count, seed, annotations_name=f"../instances_{split}.json")
              for seed, (split, count) in enumerate({"train": 16, "validation": 6, "test": 6}.items())}
    coco = {split: write_coco(root / "coco" / f"{split}2017", 12, seed, names=coco_names,
                              annotations_name=f"../instances_{split}2017.json")
            for seed, split in enumerate(("train", "val"))}
    rows = {"image": [], "image_id": [], "width": [], "height": [], "objects": []}
    annotations = json_module.loads((root / "canvases" / "instances_train.json").read_text())
    for image in annotations["images"]:
        objects = [a for a in annotations["annotations"] if a["image_id"] == image["id"]]
        # The bytes themselves, as the Hub's parquet holds them: a path would tie the datasets cache to this tmp dir.
        rows["image"].append({"bytes": (splits["train"] / image["file_name"]).read_bytes(), "path": image["file_name"]})
        rows["image_id"].append(image["id"])
        rows["width"].append(image["width"])
        rows["height"].append(image["height"])
        rows["objects"].append({"id": [a["id"] for a in objects], "area": [a["area"] for a in objects],
                                "bbox": [a["bbox"] for a in objects],
                                "category": [(a["category_id"] - 1) % 5 for a in objects]})
    features = Features({"image": Image(), "image_id": Value("int64"), "width": Value("int32"), "height": Value("int32"),
                         "objects": {"id": List(Value("int64")), "area": List(Value("float32")),
                                     "bbox": List(List(Value("float32"), length=4)),
                                     "category": List(ClassLabel(names=CPPE5_LABELS))}})
    cppe5 = Dataset.from_dict(rows, features=features)
    return {
        "tiny_detector": build_tiny_detector(root / "tiny_detector"),
        "tiny_coco_detector": build_tiny_detector(root / "tiny_coco_detector", coco_names[::-1]),
        "canvases_coco": {f"{split}_{kind}": str(path) for split, directory in splits.items()
                          for kind, path in (("dir", directory), ("annotations_file", root / "canvases" / f"instances_{split}.json"))},
        "coco_folders": {"train_dir": coco["train"], "train_annotations_file": root / "coco" / "instances_train2017.json",
                         "validation_dir": coco["val"], "validation_annotations_file": root / "coco" / "instances_val2017.json"},
        "cppe5_hub": {"dataset_name": _hub_dataset(root / "cppe5", "default", {"train": cppe5, "test": cppe5.select(range(6))})},
    }


def _hub_dataset(root: Path, config_name: str, splits: dict) -> Path:
    """A Hub dataset repo's layout: `<config>/<split>-00000-of-00001.parquet`, declared in the README's `configs`."""
    lines = ["---", "configs:", f"- config_name: {config_name}", "  data_files:"]
    for split, dataset in splits.items():
        (root / config_name).mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(root / config_name / f"{split}-00000-of-00001.parquet"))
        lines += [f"  - split: {split}", f"    path: {config_name}/{split}-*"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))
    return root


# The entity types of the token data stand-ins, as the demo's tweets (WNUT-16) and CoNLL-2003 name them.
ENTITY_TYPES = {
    "wnut16_files": ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                     "sportsteam", "tvshow"],
    "conll2003_hub": ["PER", "ORG", "LOC", "MISC"],
}
CONLL2003_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _token_stand_ins(root: Path) -> dict:
    """The tiny BERT of the token recipe's tests, and data with each token config's tags: every type once as one word
    and once as two, in every split (train's sentences again, so no split holds a tag train lacks)."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    from .test_token_cls_recipe import write_conll, write_tiny_bert

    def sentences(types: list[str]) -> list[tuple[list[str], list[str]]]:
        return [(["we", "saw", "anna", "and", "new", "york"], ["O", "O", f"B-{t}", "O", f"B-{t}", f"I-{t}"]) for t in types]

    root.mkdir()
    wnut = {f"{split}_file": write_conll(root / f"wnut16_{split}.conll", sentences(ENTITY_TYPES["wnut16_files"]))
            for split in ("train", "validation", "test")}
    features = Features({"id": Value("string"), "tokens": List(Value("string")),
                         "pos_tags": List(ClassLabel(names=["NN", "VB"])), "chunk_tags": List(ClassLabel(names=["O", "B-NP"])),
                         "ner_tags": List(ClassLabel(names=CONLL2003_TAGS))})
    rows = sentences(ENTITY_TYPES["conll2003_hub"])
    conll = {"id": [str(i) for i in range(len(rows))], "tokens": [words for words, _ in rows],
             "pos_tags": [[0] * len(words) for words, _ in rows], "chunk_tags": [[1] * len(words) for words, _ in rows],
             "ner_tags": [[CONLL2003_TAGS.index(tag) for tag in tags] for _, tags in rows]}
    for split in ("train", "validation", "test"):  # the layout of the Hub's parquet conversion (refs/convert/parquet)
        (root / "conll2003" / "conll2003" / split).mkdir(parents=True)
        Dataset.from_dict(conll, features=features).to_parquet(str(root / "conll2003" / "conll2003" / split / "0000.parquet"))
    return {"tiny_bert_tagger": write_tiny_bert(root / "tiny_bert"), "wnut16_files": wnut,
            "conll2003_hub": {"dataset_name": root / "conll2003"}}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shipped_runs")


def run_shipped(config: str, stand_ins: dict, runs_dir: Path) -> Path:
    """Run `config` through its recipe's command line with the stand-ins; return its output dir."""
    model, data, student = STAND_INS[config]
    output_dir = runs_dir / config.replace("/", "__").removesuffix(".yaml")
    if (output_dir / "report.md").is_file():
        return output_dir  # already run for a compress config that needed it as its teacher
    shipped = yaml.safe_load((CONFIGS / config).read_text())
    for key in ("dataset_name", *(f"{split}_{kind}" for split in ("train", "validation", "test")
                                   for kind in ("dir", "annotations_file"))):
        shipped.pop(key, None)
    teacher = run_shipped(model, stand_ins, runs_dir) if model in STAND_INS else stand_ins[model]
    overrides = {"model_name_or_path": str(teacher), "output_dir": str(output_dir), **SHORT_RUN,
                 **{key: str(value) for key, value in stand_ins[data].items()}}
    if student:
        overrides.update(student_model_name_or_path=str(stand_ins[student]), **SHORT_COMPRESSION)
    if shipped.get("compare_with"):  # the earlier runs a config compares with are other shipped configs' outputs
        overrides["compare_with"] = [str(run_shipped(_config_writing(path), stand_ins, runs_dir)) for path in shipped["compare_with"]]
    path = runs_dir / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump({**shipped, **overrides}))
    recipe = REPO / "recipes" / f"{config.split('/')[0]}.py"
    argv = sys.argv
    sys.argv = [str(recipe), "--config", str(path)]
    try:
        runpy.run_path(str(recipe), run_name="__main__")
    finally:
        sys.argv = argv
    return output_dir


def _config_writing(output_dir: str) -> str:
    """The shipped config whose run writes `output_dir`."""
    return next(c for c in STAND_INS if yaml.safe_load((CONFIGS / c).read_text()).get("output_dir") == output_dir)


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("image_cls/")])
def test_shipped_image_config_runs_and_reports(config, stand_ins, runs_dir):
    output_dir = run_shipped(config, stand_ins, runs_dir)
    results = json.loads((output_dir / "eval_results.json").read_text())
    num_labels = 3 if "beans" in STAND_INS[config][1] else 10
    assert set(results) == {"validation", "test"}
    assert ("top5_accuracy" in results["test"]) == (num_labels > 5)
    assert AutoConfig.from_pretrained(output_dir).num_labels == num_labels
    report = (output_dir / "report.md").read_text()
    assert "## Hardest classes (test)" in report and "## How sure these numbers are" in report
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0
    if yaml.safe_load((CONFIGS / config).read_text()).get("compare_with"):  # paired on the same test images
        assert "| test | Accuracy |" in report and "Recall of each class on the test split" in report


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("compress/")])
def test_shipped_compress_config_runs_and_reports(config, stand_ins, runs_dir):
    output_dir = run_shipped(config, stand_ins, runs_dir)
    shipped = yaml.safe_load((CONFIGS / config).read_text())
    variants = json.loads((output_dir / "compression_results.json").read_text())["variants"]
    names = " ".join(f"{v['name']} {v['method']} {v['path']}" for v in variants)
    assert all(0.0 <= v["metrics"]["accuracy"] <= 1.0 for v in variants)
    for sparsity in shipped["pruning_sparsities"]:
        assert f"{round(100 * sparsity)}" in names
    assert "static" in names and "distilled" in names
    assert (output_dir / "report.md").is_file()


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("text_cls/")])
def test_shipped_text_config_runs_and_reports(config, stand_ins, runs_dir):
    output_dir = run_shipped(config, stand_ins, runs_dir)
    data = STAND_INS[config][1]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert set(results) == {"validation", "test"}
    assert list(AutoConfig.from_pretrained(output_dir).id2label.values()) == TEXT_LABELS[data]
    section = "## Per-label scores (test)" if data == "go_emotions_hub" else "## Hardest classes (test)"
    assert section in (output_dir / "report.md").read_text()
    if data == "sst2_hub":  # the labelled validation split is the test; 5% of train, stratified, is validation
        assert results["test"]["num_samples"] == 20 and results["validation"]["num_samples"] == 2
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("token_cls/")])
def test_shipped_token_config_runs_and_reports(config, stand_ins, runs_dir):
    output_dir = run_shipped(config, stand_ins, runs_dir)
    data = STAND_INS[config][1]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert set(results) == {"validation", "test"}
    types = ENTITY_TYPES[data]
    tags = CONLL2003_TAGS if data == "conll2003_hub" else ["O", *(f"B-{t}" for t in types), *(f"I-{t}" for t in types)]
    assert list(AutoConfig.from_pretrained(output_dir).id2label.values()) == tags
    assert results["test"]["num_entities"] == 2 * len(types)
    assert "## Entity types (test)" in (output_dir / "report.md").read_text()
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("sft/")])
def test_shipped_sft_config_runs_and_reports(config, stand_ins, runs_dir):
    import torch

    if config in NEEDS_GPU and not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stopped:
            run_shipped(config, stand_ins, runs_dir)
        assert stopped.value.code == 2
        return
    output_dir = run_shipped(config, stand_ins, runs_dir)
    shipped = yaml.safe_load((CONFIGS / config).read_text())
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert set(results) == {"validation", "test"}
    assert {"loss", "perplexity", "baseline_loss"} <= set(results["test"])
    assert ("exact_match" in results["test"]) == bool(shipped.get("exact_match"))
    assert "## A training sample" in (output_dir / "report.md").read_text()
    assert (output_dir / "merged").is_dir() == bool(shipped.get("merge_adapter"))
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0


@pytest.mark.parametrize("config", [c for c in STAND_INS if c.startswith("object_detection/")])
def test_shipped_detection_config_runs_and_reports(config, stand_ins, runs_dir):
    output_dir = run_shipped(config, stand_ins, runs_dir)
    data = STAND_INS[config][1]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert set(results) == ({"validation"} if data == "coco_folders" else {"validation", "test"})
    names = CPPE5_LABELS if data == "cppe5_hub" else None
    id2label = AutoConfig.from_pretrained(output_dir).id2label
    if names:
        assert list(id2label.values()) == names
    # The COCO stand-in checkpoint knows the data's classes by name: its head and order are kept and it is scored.
    assert ("original_map" in results["validation"]) == (data == "coco_folders")
    assert "## Per-class AP" in (output_dir / "report.md").read_text()
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0
