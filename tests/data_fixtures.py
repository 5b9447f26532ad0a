"""A small hand-written PartImageNet_OOD copy for the data-loader tests.

`fixture_annotations()` gives the three COCO dicts (train / val / test) with every known defect of
the real files; `write_dataset(root, data, ...)` writes them and tiny JPEGs in a chosen layout.
Tests mutate a fresh copy of the dicts to make each kind of bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from pycocotools import mask as mask_utils

from episodes import taxonomy

TRAIN_A, TRAIN_B = taxonomy.split_classes("train")[:2]
VAL_A = taxonomy.split_classes("val")[0]
TEST_A = taxonomy.split_classes("test")[0]
W, H = 16, 12  # every fixture image is 16 wide, 12 high


def rect(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """The polygon of an axis-aligned rectangle (its 4 corners)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _image(image_id: int, synset: str, n: int) -> dict:
    return {"id": image_id, "file_name": f"{synset}_{n}.JPEG", "height": H, "width": W}


def _ann(ann_id: int, image_id: int, part: int, segmentation, area: float = 10.0) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": part,
        "segmentation": segmentation,
        "area": area,
        "bbox": [0, 0, 1, 1],
        "iscrowd": 0,
    }


def categories() -> list[dict]:
    return [
        {"id": p.id, "name": p.name, "supercategory": p.super_category} for p in taxonomy.parts()
    ]


# Top-left 3x2 block (rows 0-1, cols 0-2) as a compressed RLE, the COCO "counts" string form.
RLE_BLOCK = (slice(0, 2), slice(0, 3))


def _rle_block() -> dict:
    import numpy as np

    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[RLE_BLOCK] = 1
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


# What the fixture's defects are, by the annotation ids that carry them.
KEPT_TRAIN_IDS = [101, 102, 103, 109, 111]
DEFECT_IDS = {
    "polygon with < 3 points": [104],
    "area == 0": [105],
    "segmentation pycocotools cannot decode": [106, 107, 108, 110],
}
DROPPED_POLYGON_IDS = [109]


def fixture_annotations() -> dict[str, dict]:
    """Fresh COCO dicts per split: 5 train images (2 classes), 1 val, 1 test."""
    train_images = [
        _image(1, TRAIN_A, 1),
        _image(2, TRAIN_A, 2),
        _image(3, TRAIN_B, 1),
        _image(4, TRAIN_B, 2),
        _image(5, TRAIN_B, 3),
    ]  # image 5: no annotations
    train_anns = [
        _ann(101, 1, 0, [rect(2, 3, 6, 8)], 20),  # part 0: two rectangles
        _ann(102, 1, 0, [rect(8, 1, 10, 4)], 6),
        _ann(103, 1, 1, [rect(0, 0, 16, 12)], 192),  # part 1: the whole image
        _ann(104, 2, 2, [[1, 1, 5, 5]], 4),  # defect: a 2-point polygon
        _ann(105, 2, 1, [rect(1, 1, 3, 3)], 0),  # defect: area == 0
        _ann(106, 3, 1, []),  # defect: no polygon at all
        _ann(107, 3, 1, [[1, 1, "x", 1, 5, 5]]),  # defect: a non-number
        _ann(108, 3, 3, [[1, 1, 5, 1, 5, 5, 3]]),  # defect: odd number of values
        _ann(109, 4, 3, [rect(1, 1, 4, 4), [0, 0, 1, 1]]),  # 2-point polygon dropped, rest kept
        _ann(110, 4, 2, [[1, float("nan"), 5, 1, 5, 5]]),  # defect: NaN (pycocotools would hang)
        _ann(111, 4, 0, _rle_block(), 6),  # a compressed-RLE region
    ]
    val_images = [_image(1, VAL_A, 1)]
    val_anns = [_ann(201, 1, 9, [rect(0, 0, 4, 4)], 16)]
    test_images = [_image(1, TEST_A, 1)]
    test_anns = [_ann(301, 1, 13, [rect(4, 4, 8, 8)], 16)]
    return {
        "train": {"images": train_images, "annotations": train_anns, "categories": categories()},
        "val": {"images": val_images, "annotations": val_anns, "categories": categories()},
        "test": {"images": test_images, "annotations": test_anns, "categories": categories()},
    }


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_dataset(
    root: Path,
    data: dict[str, dict] | None = None,
    *,
    images_in: str = "split-folders",
    json_in: str = "",
) -> Path:
    """Write the split jsons (under root/json_in) and a tiny JPEG per listed image.

    images_in: "split-folders" (<root>/<split>/<synset>/) or "JPEGImages" (<root>/JPEGImages/<synset>/).
    Image entries whose file_name is not a bare name get no file; a size that is not an integer
    is written as the fixture's 16x12.
    """
    data = fixture_annotations() if data is None else data
    for split, coco in data.items():
        write_json(root / json_in / f"{split}.json", coco)
        (root / (split if images_in == "split-folders" else "JPEGImages")).mkdir(
            parents=True, exist_ok=True
        )
        for img in coco.get("images", []) if isinstance(coco, dict) else []:
            name = img["file_name"]
            if "/" in name or "\\" in name or ".." in name:
                continue
            synset = name.split("_")[0]
            folder = root / (split if images_in == "split-folders" else "JPEGImages") / synset
            folder.mkdir(parents=True, exist_ok=True)
            colour = (img["id"] * 40 % 256, 90, 160)
            size = [
                v if isinstance(v, int) and v > 0 else d
                for v, d in ((img.get("width"), W), (img.get("height"), H))
            ]
            Image.new("RGB", tuple(size), colour).save(folder / name, "JPEG")
    return root
