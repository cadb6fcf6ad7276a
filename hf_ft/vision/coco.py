"""COCO-format detection data: an image folder plus an instances JSON (`images`, `annotations`, `categories`), as
COCO itself, Roboflow, CVAT and Label Studio export it. Read into plain rows, every reference checked first."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..errors import InputError

_SHOWN = 5


def find_annotations_file(image_dir: Path, annotations_file: str | None, flag: str) -> Path:
    """The instances JSON of `image_dir`: `annotations_file` when given, else the only `*.json` in the folder
    (Roboflow's `_annotations.coco.json` layout).

    Raises:
        InputError: the file does not exist, or the folder holds no JSON or more than one.
    """
    if annotations_file is not None:
        path = Path(annotations_file)
        if not path.is_file():
            raise InputError(f"--{flag} {path} does not exist: point it at the COCO instances JSON of {image_dir}.")
        return path
    candidates = sorted(image_dir.glob("*.json"))
    if len(candidates) != 1:
        found = f"{len(candidates)} (" + ", ".join(p.name for p in candidates[:_SHOWN]) + ")" if candidates else "none"
        raise InputError(
            f"No annotations file for {image_dir}: set --{flag} to its COCO instances JSON (a folder holding exactly "
            f"one *.json is read without it; this one holds {found})."
        )
    return candidates[0]


def read_coco(annotations_file: Path, image_dir: Path) -> tuple[dict[int, str], list[dict]]:
    """The categories (id -> name) and one row per image: `file` (absolute path), `image_id`, `width`, `height`,
    `bbox` (COCO x, y, width, height in pixels, one per annotation) and `category_id`.

    Crowd annotations (`iscrowd: 1`, run-length masks over many objects) are left out, as COCO's evaluation ignores
    them for detection.

    Raises:
        InputError: the file is not a COCO instances JSON, an annotation names a category or an image the file does
            not list, or images listed in it are not in `image_dir` (all such are counted, the first few named).
    """
    try:
        coco = json.loads(annotations_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{annotations_file} is not valid JSON ({err}).") from None
    missing_keys = [key for key in ("images", "annotations", "categories") if not isinstance(coco, dict) or key not in coco]
    if missing_keys:
        raise InputError(
            f"{annotations_file} is not a COCO instances file: it has no {', '.join(repr(k) for k in missing_keys)}. "
            "Export the annotations in COCO format (images, annotations, categories)."
        )
    categories = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
    images = {int(image["id"]): image for image in coco["images"]}
    absent = [image["file_name"] for image in images.values() if not (image_dir / image["file_name"]).is_file()]
    if absent:
        raise InputError(
            f"{len(absent)} image(s) listed in {annotations_file} are not in {image_dir}: "
            f"{', '.join(absent[:_SHOWN])}. Fix the folder or the JSON's file_name entries."
        )
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in coco["annotations"]:
        category, image_id = int(annotation["category_id"]), int(annotation["image_id"])
        if category not in categories:
            raise InputError(
                f"{annotations_file}: annotation {annotation.get('id')} has category_id {category}, which is not in "
                f"its categories (ids {sorted(categories)[:20]}). Add the category or fix the annotation."
            )
        if image_id not in images:
            raise InputError(
                f"{annotations_file}: annotation {annotation.get('id')} is of image_id {image_id}, which its images do "
                "not list."
            )
        if not annotation.get("iscrowd", 0):
            by_image[image_id].append(annotation)
    rows = []
    for image_id, image in images.items():
        annotations = by_image.get(image_id, [])
        rows.append(
            {
                "file": str((image_dir / image["file_name"]).resolve()),
                "image_id": image_id,
                "width": image.get("width"),
                "height": image.get("height"),
                "bbox": [[float(v) for v in a["bbox"]] for a in annotations],
                "category_id": [int(a["category_id"]) for a in annotations],
            }
        )
    return categories, rows
