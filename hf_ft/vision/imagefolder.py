"""Checks of an imagefolder tree (`--train_dir <dir>/<label>/*.jpg`) by file names alone, before datasets reads it."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from ..errors import InputError

# What imagefolder reads, from datasets itself so the scan below cannot drift from it: files with these
# extensions (compared lower-cased, as datasets does), metadata files, and .zip archives it extracts.
IMAGE_EXTENSIONS = frozenset(ImageFolder.EXTENSIONS)
IMAGEFOLDER_EXTRA_FILES = frozenset(ImageFolder.METADATA_FILENAMES)
_SHOWN_FILES = 5

logger = logging.getLogger(__name__)


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
