"""A tiny RT-DETR and small COCO-format data of real digits on canvases, for the detection tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 64


def build_tiny_detector(directory: Path, label_names: tuple[str, ...] = ("object",), family: str = "rt_detr") -> Path:
    """A tiny detector of `family` with random weights and its image processor at 64 px: RT-DETR (small ResNet
    backbone), DETR (ResNet; pads, with a pixel mask), YOLOS (a ViT; no pixel mask) or D-FINE (timm backbone)."""
    import transformers as tf

    labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
              "label2id": {name: i for i, name in enumerate(label_names)}}
    small = {"encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "encoder_attention_heads": 2, "decoder_attention_heads": 2}
    if family == "detr":
        backbone = tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                   out_features=["stage4"])
        model = tf.DetrForObjectDetection(tf.DetrConfig(backbone_config=backbone, d_model=32, encoder_layers=1,
                                                        decoder_layers=1, num_queries=10, **small, **labels))
        processor = tf.DetrImageProcessor(size={"shortest_edge": SIZE, "longest_edge": SIZE})
    elif family == "yolos":
        model = tf.YolosForObjectDetection(tf.YolosConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=[SIZE, SIZE],
            patch_size=16, num_detection_tokens=10, **labels))
        processor = tf.YolosImageProcessor(size={"shortest_edge": SIZE, "longest_edge": SIZE})
    else:
        detection = {"d_model": 32, "encoder_hidden_dim": 32, "decoder_in_channels": [32, 32, 32], "decoder_layers": 1,
                     "num_queries": 20, "num_denoising": 10, **small, **labels}
        if family == "d_fine":
            backbone = tf.TimmBackboneConfig(backbone="test_resnet", out_indices=[2, 3, 4], use_pretrained_backbone=False)
            model = tf.DFineForObjectDetection(tf.DFineConfig(
                backbone_config=backbone, freeze_backbone_batch_norms=False, encoder_in_channels=[48, 192, 96],
                **{**detection, "decoder_layers": 2}))
        else:
            backbone = tf.RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                             out_indices=[2, 3, 4])
            model = tf.RTDetrForObjectDetection(tf.RTDetrConfig(backbone_config=backbone, encoder_in_channels=[32, 64, 128],
                                                                **detection))
        processor = tf.RTDetrImageProcessor(size={"height": SIZE, "width": SIZE})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def digit_canvases(count: int, seed: int) -> list[tuple[object, list[list[float]], list[int]]]:
    """`count` canvases of real digits with their COCO boxes and digits (hf_ft.assets.digit_canvas)."""
    from sklearn.datasets import load_digits

    from hf_ft.assets import digit_canvas

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    pool = list(range(seed * 300, seed * 300 + 300))
    return [digit_canvas(rng, pool, pixels, digits.target) for _ in range(count)]


def write_coco(directory: Path, count: int, seed: int, *, annotations_name: str = "_annotations.coco.json",
               names: tuple[str, ...] = tuple(str(d) for d in range(10))) -> Path:
    """A COCO folder (Roboflow layout: the JSON inside the image folder); category ids are 1-based."""
    directory.mkdir(parents=True)
    images, annotations = [], []
    for image_id, (canvas, boxes, labels) in enumerate(digit_canvases(count, seed)):
        canvas.save(directory / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": canvas.width, "height": canvas.height})
        for box, label in zip(boxes, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    (directory / annotations_name).write_text(json.dumps({"images": images, "annotations": annotations,
                                                          "categories": categories}))
    return directory
