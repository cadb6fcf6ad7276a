"""Load raw splits from a Hub dataset, an imagefolder tree, or csv/json/parquet files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from datasets import Dataset, DatasetDict, load_dataset
from huggingface_hub import constants

from ..args import DataArguments
from ..errors import InputError

VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_raw_splits(
    data_args: DataArguments,
    *,
    token: str | None = None,
    cache_dir: str | None = None,
    check_dir: Callable[[str, Path], None] | None = None,
) -> DatasetDict:
    """Load the user's data and name its splits `train`, `validation` (if any) and `test` (if any).

    `check_dir(split, path)` runs on each `--<split>_dir` folder before datasets reads it (the image task passes
    `hf_ft.vision.imagefolder.check_imagefolder`).

    Raises:
        FileNotFoundError: a local directory or file does not exist.
        InputError: a split named in the arguments is missing or empty, a file has an unknown extension,
            `check_dir` refuses a folder, or a Hub dataset is asked for while `HF_HUB_OFFLINE=1` and is not cached.
    """
    if data_args.dataset_name:
        raw = _load_hub_or_local_dataset(data_args, token=token, cache_dir=cache_dir)
    elif data_args.train_dir:
        paths = _split_paths(data_args, "dir")
        if check_dir is not None:
            for split, path in paths.items():
                check_dir(split, Path(path))
        raw = _load_builder("imagefolder", paths, cache_dir=cache_dir, glob="**")
    else:
        raw = _load_builder(_file_builder(_split_paths(data_args, "file")), _split_paths(data_args, "file"), cache_dir=cache_dir)
    splits = _pick_splits(raw, data_args)
    for name, split in splits.items():
        if len(split) == 0:
            raise InputError(f"The {name} split is empty. Check the data source ({_describe_source(data_args)}).")
    return splits


def _describe_source(data_args: DataArguments) -> str:
    return data_args.dataset_name or data_args.train_dir or data_args.train_file


def _split_paths(data_args: DataArguments, kind: str) -> dict[str, str]:
    paths = {
        split: getattr(data_args, f"{split}_{kind}")
        for split in ("train", "validation", "test")
        if getattr(data_args, f"{split}_{kind}")
    }
    for split, path in paths.items():
        exists = Path(path).is_dir() if kind == "dir" else Path(path).is_file()
        if not exists:
            raise FileNotFoundError(f"--{split}_{kind} {path} does not exist (as a {'directory' if kind == 'dir' else 'file'}).")
    return paths


def _file_builder(paths: dict[str, str]) -> str:
    suffixes = {Path(p).suffix.lower() for p in paths.values()}
    unknown = suffixes - set(FILE_BUILDERS)
    if unknown:
        raise InputError(f"Data files must end in {', '.join(FILE_BUILDERS)}; got {', '.join(sorted(unknown))}.")
    builders = {FILE_BUILDERS[s] for s in suffixes}
    if len(builders) > 1:
        raise InputError(f"Use one file format for all splits, got {', '.join(sorted(builders))}.")
    return builders.pop()


def _load_builder(builder: str, paths: dict[str, str], *, cache_dir: str | None, glob: str | None = None) -> DatasetDict:
    data_files = {split: str(Path(p) / glob) if glob else p for split, p in paths.items()}
    # drop_labels=False: imagefolder otherwise drops the label column when it finds a single class folder,
    # and the user would get a confusing "no label column" instead of "only one class".
    kwargs = {"drop_labels": False} if builder == "imagefolder" else {}
    try:
        return load_dataset(builder, data_files=data_files, cache_dir=cache_dir, **kwargs)
    except ValueError as err:
        empty = re.search(r'Instruction "(\w+)" corresponds to no data', str(err))
        if empty:
            split = empty.group(1)
            raise InputError(f"The {split} split is empty: {paths[split]} holds no examples.") from err
        raise


def _load_hub_or_local_dataset(data_args: DataArguments, *, token: str | None, cache_dir: str | None) -> DatasetDict:
    try:
        return load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            revision=data_args.dataset_revision,
            token=token,
            cache_dir=cache_dir,
        )
    except (ConnectionError, FileNotFoundError, OSError) as err:
        if constants.HF_HUB_OFFLINE and not Path(data_args.dataset_name).exists():
            raise InputError(
                f"Dataset `{data_args.dataset_name}` is not a local directory and not in the Hugging Face cache, and "
                "HF_HUB_OFFLINE=1 forbids downloading it. Unset HF_HUB_OFFLINE, or point --dataset_name/--train_dir "
                "at local data."
            ) from err
        raise


def _pick_splits(raw: DatasetDict, data_args: DataArguments) -> DatasetDict:
    available = list(raw)
    if data_args.train_split_name not in raw:
        raise InputError(
            f"No split `{data_args.train_split_name}` in the data; it has {available}. Set --train_split_name."
        )
    splits = {"train": raw[data_args.train_split_name]}
    validation = _find_split(raw, data_args.validation_split_name, VALIDATION_SPLIT_NAMES, "validation_split_name")
    test = _find_split(raw, data_args.test_split_name, ("test",), "test_split_name")
    if validation:
        splits["validation"] = raw[validation]
    if test:
        splits["test"] = raw[test]
    return DatasetDict(splits)


def _find_split(raw: DatasetDict, requested: str | None, candidates: tuple[str, ...], flag: str) -> str | None:
    if requested is not None:
        if requested not in raw:
            raise InputError(f"No split `{requested}` in the data; it has {list(raw)}. Fix --{flag}.")
        return requested
    return next((name for name in candidates if name in raw), None)


def source_dir(data_args: DataArguments, split: str) -> Path | None:
    """The directory that relative file paths in `split`'s data file are relative to (file sources only)."""
    path = getattr(data_args, f"{split}_file", None)
    return Path(path).resolve().parent if path else None


def subsample(split: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of at most `max_samples` rows (the transformers examples' convention)."""
    if max_samples is None or max_samples >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(max_samples))


def cap_samples(splits: DatasetDict, data_args: DataArguments, seed: int) -> DatasetDict:
    """`splits` with train cut to `max_train_samples` and validation and test to `max_eval_samples` (`subsample`)."""
    caps = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
            "test": data_args.max_eval_samples}
    return DatasetDict({name: subsample(split, caps.get(name), seed) for name, split in splits.items()})


def saved_parquet_feature(path: str | Path, column: str) -> dict | None:
    """The datasets feature a parquet file written by `Dataset.to_parquet` records for `column` (as a dict:
    `{"_type": "ClassLabel", "names": [...]}`), or None when the file records none.

    datasets 5.2 gives every split of a parquet load the first file's features, so a split saved with other
    ClassLabel names would be read with train's names: read each file's own to compare them.
    """
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    try:
        feature = json.loads(metadata[b"huggingface"])["info"]["features"][column]
    except (KeyError, ValueError, TypeError):
        return None
    return feature if isinstance(feature, dict) else None
