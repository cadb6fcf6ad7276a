"""Bounding boxes as datasets give them (COCO's x, y, width, height; Pascal VOC's corners; centres; in pixels or
as fractions of the image) turned into one form, absolute corners (x1, y1, x2, y2) in pixels, and checked.

The conversions are torchvision's (`torchvision.ops.box_convert`); what this module adds is the cleaning every
detection dataset needs before training, with counts a user can read in the log:

- a box that sticks out of its image is clipped to it;
- a box with no area left (zero or negative width or height, or under `min_size` pixels after clipping) is dropped;
- a box wholly outside its image is an error: it nearly always means the boxes are in another format than the
  one declared (corners read as width/height, fractions read as pixels), and dropping them would train on
  silently emptied images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert

# Our names (the ones users write in configs) -> torchvision's.
BOX_FORMATS = {"xywh": "xywh", "xyxy": "xyxy", "cxcywh": "cxcywh"}


def to_xyxy(boxes: torch.Tensor, box_format: str, *, normalized: bool, width: int, height: int) -> torch.Tensor:
    """`boxes` (N x 4, in `box_format`, as fractions of the image if `normalized`) as absolute pixel corners."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if normalized:
        boxes = boxes * torch.tensor([width, height, width, height], dtype=torch.float32)
    return box_convert(boxes, BOX_FORMATS[box_format], "xyxy")


def from_xyxy(boxes: torch.Tensor, box_format: str, *, normalized: bool, width: int, height: int) -> torch.Tensor:
    """The inverse of `to_xyxy`: absolute corners back into `box_format` (fractions of the image if `normalized`)."""
    boxes = box_convert(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), "xyxy", BOX_FORMATS[box_format])
    if normalized:
        boxes = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
    return boxes


@dataclass
class BoxCounts:
    """What cleaning did to a split's boxes (logged, so a user sees how much of their labelling was changed)."""

    kept: int = 0
    clipped: int = 0
    dropped: int = 0

    def add(self, other: "BoxCounts") -> None:
        self.kept += other.kept
        self.clipped += other.clipped
        self.dropped += other.dropped


class BoxOutsideImageError(ValueError):
    """A box that does not overlap its image at all."""

    def __init__(self, box: list[float], width: int, height: int):
        self.box, self.width, self.height = box, width, height
        shown = ", ".join(f"{v:g}" for v in box)
        super().__init__(f"box [{shown}] (as x1, y1, x2, y2 pixels) lies outside the {width}x{height} image")


def clean_boxes(boxes: torch.Tensor, *, width: int, height: int, min_size: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, BoxCounts]:
    """Clip absolute corner boxes to the image and drop those left without `min_size` pixels of width or height.

    Returns:
        The kept boxes (clipped), a boolean mask of the input boxes that were kept, and the counts.

    Raises:
        BoxOutsideImageError: a box with positive size lies wholly outside the image (no overlap at all).
    """
    boxes = boxes.reshape(-1, 4)
    has_size = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    outside = has_size & ((boxes[:, 0] >= width) | (boxes[:, 1] >= height) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
    if outside.any():
        raise BoxOutsideImageError(boxes[outside][0].tolist(), width, height)
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    changed = (clipped != boxes).any(dim=1)
    keep = ((clipped[:, 2] - clipped[:, 0]) >= min_size) & ((clipped[:, 3] - clipped[:, 1]) >= min_size)
    counts = BoxCounts(kept=int(keep.sum()), clipped=int((changed & keep).sum()), dropped=int((~keep).sum()))
    return clipped[keep], keep, counts
