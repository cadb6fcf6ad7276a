"""Data loading for the recipes: sources, labels, splits, image checks and transforms."""

from .image_classification import ImageClassificationData, load_image_classification_data
from .transforms import attach_transforms, collate

__all__ = ["ImageClassificationData", "load_image_classification_data", "attach_transforms", "collate"]
