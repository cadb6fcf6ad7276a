"""Load raw splits from a Hub dataset, an imagefolder tree, or csv/json/parquet files."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from huggingface_hub import constants

from ..args import DataArguments
from ..errors import InputError

VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# What imagefolder reads, from datasets itself so the scan below cannot drift from it: files with these
# extensions (compared lower-cased, as datasets does), metadata files, and .zip archives it extracts.
IMAGE_EXTENSIONS = frozenset(ImageFolder.EXTENSIONS)
IMAGEFOLDER_EXTRA_FILES = frozenset(ImageFolder.METADATA_FILENAMES)
_SHOWN_FILES = 5

logger = logging.getLogger(__name__)


def load_raw_splits(data_args: DataArguments, *, token: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """Load the user's data and name its splits `train`, `validation` (if any) and `test` (if any).

    Raises:
        FileNotFoundError: a local directory or file does not exist.
        InputError: a split named in the arguments is missing or empty, a file has an unknown extension,
            an imagefolder has images outside class sub-folders (`check_imagefolder`), or a Hub dataset is asked
            for while `HF_HUB_OFFLINE=1` and is not cached.
    """
    if data_args.dataset_name:
        raw = _load_hub_or_local_dataset(data_args, token=token, cache_dir=cache_dir)
    elif data_args.train_dir:
        paths = _split_paths(data_args, "dir")
        for split, path in paths.items():
            check_imagefolder(split, Path(path))
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


@dataclass
class _FolderScan:
    """What one imagefolder directory holds, by the rules datasets' imagefolder reads it with."""

    top_images: int = 0  # image files directly in the directory, outside any class sub-folder
    class_dirs: set[str] = field(default_factory=set)  # top-level sub-folders with images at any depth
    has_metadata: bool = False  # a metadata.csv/jsonl/parquet: labels then come from it, not from folders
    has_archives: bool = False  # .zip files imagefolder extracts: their layout is not seen without opening them
    ignored: list[str] = field(default_factory=list)  # files imagefolder skips without a word (relative paths)
    linked_dirs: list[str] = field(default_factory=list)  # symlinked sub-folders, which imagefolder skips too


def check_imagefolder(split: str, root: Path) -> None:
    """Check an imagefolder split directory with a scan of file names only, before datasets reads anything.

    Warns (with a count and a few names) about files that imagefolder would skip silently because their
    extension is not an image one: a photo saved as .heic, or notes and spreadsheets left beside the images.

    Raises:
        InputError: a sub-folder is a symbolic link (imagefolder would leave its images out, a whole class
            perhaps); the directory holds no image files; or it holds images directly inside it (no class
            sub-folders), which imagefolder would label with the directory's own name.
    """
    scan = _scan_imagefolder(root)
    flag = f"--{split}_dir {root}"
    if scan.linked_dirs:
        raise InputError(
            f"{flag} has sub-folders that are symbolic links ({_few(sorted(scan.linked_dirs))}); datasets' "
            "imagefolder skips their images without a word. Copy them in (`cp -rL`), or link single files instead."
        )
    if scan.ignored:
        logger.warning(
            "Ignoring %d non-image file(s) in %s (%s): %s%s. imagefolder reads only image extensions "
            "(.jpg, .png, .webp, ...); convert any that are images, or remove them to silence this.",
            len(scan.ignored), flag, _count_by_extension(scan.ignored),
            ", ".join(sorted(scan.ignored)[:_SHOWN_FILES]), _and_more(len(scan.ignored)),
        )
    if scan.has_metadata or scan.has_archives:
        return  # labels come from the metadata file, or from folders inside archives this scan does not open
    if not scan.top_images and not scan.class_dirs:
        others = f" (only {len(scan.ignored)} file(s) with other extensions)" if scan.ignored else ""
        raise InputError(f"{flag} holds no image files{others}: put each class's images in {root}/<class name>/.")
    if scan.top_images and not scan.class_dirs:
        raise InputError(
            f"{flag} holds {_files(scan.top_images)} but no class sub-folders: put each class's images in "
            f"{root}/<class name>/."
        )
    if scan.top_images:
        raise InputError(
            f"{flag} holds {_files(scan.top_images)} directly inside it, beside the class sub-folders "
            f"{_few(sorted(scan.class_dirs))}: move each into {root}/<class name>/ (imagefolder would label them "
            f"`{root.name}`)."
        )


def _scan_imagefolder(root: Path) -> _FolderScan:
    scan = _FolderScan()
    # Not followlinks: datasets' glob follows linked files and a linked root, but not linked sub-folders.
    for folder, dirnames, filenames in os.walk(root):
        relative = Path(folder).relative_to(root)
        # datasets' "**" pattern skips hidden files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints) and
        # "__" folders (__MACOSX); they are not the user's data, so they are not counted as ignored either.
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        scan.linked_dirs += [(relative / d).as_posix() for d in dirnames if os.path.islink(os.path.join(folder, d))]
        for name in filenames:
            if not name.startswith("."):
                _scan_file(scan, relative, name)
    return scan


def _scan_file(scan: _FolderScan, relative: Path, name: str) -> None:
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        if relative.parts:
            scan.class_dirs.add(relative.parts[0])
        else:
            scan.top_images += 1
    elif name in IMAGEFOLDER_EXTRA_FILES:
        scan.has_metadata = True
    elif suffix == ".zip":  # imagefolder extracts archives and reads the images inside
        scan.has_archives = True
    else:
        scan.ignored.append((relative / name).as_posix())


def _count_by_extension(names: list[str]) -> str:
    """`.txt: 2, .csv: 1`: most common first, then by name, so the message is the same on every file system."""
    kinds = Counter(Path(name).suffix.lower() or Path(name).name for name in names)
    return ", ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def _files(count: int) -> str:
    return f"{count} image file{'' if count == 1 else 's'}"


def _few(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN_FILES]) + _and_more(len(names))


def _and_more(count: int) -> str:
    return f" (and {count - _SHOWN_FILES} more)" if count > _SHOWN_FILES else ""


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
