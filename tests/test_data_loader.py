"""The PartImageNet_OOD loader on the hand-written fixture: records, defects, masks, layouts."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from data_fixtures import (
    DEFECT_IDS,
    DROPPED_POLYGON_IDS,
    KEPT_TRAIN_IDS,
    RLE_BLOCK,
    TEST_A,
    TRAIN_A,
    TRAIN_B,
    VAL_A,
    H,
    W,
    fixture_annotations,
    rect,
    write_dataset,
    write_json,
)
from pycocotools import mask as mask_utils

from benchmark.data.errors import DatasetDefectWarning
from benchmark.data.masks import POLYGON_DROPPED
from benchmark.data.partimagenet import load_partimagenet
from episodes import taxonomy


def load_quietly(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        return load_partimagenet(root, **kw)


@pytest.fixture
def dataset_root(tmp_path):
    return write_dataset(tmp_path / "pin")


def test_images_in_split_order_with_class_from_file_name(dataset_root):
    ds = load_quietly(dataset_root)
    assert [r.split for r in ds.images] == ["train"] * 5 + ["val", "test"]
    assert [r.synset for r in ds.images] == [TRAIN_A] * 2 + [TRAIN_B] * 3 + [VAL_A, TEST_A]
    assert [r.index for r in ds.images] == list(range(7))
    assert ds.images[2].file_name == f"{TRAIN_B}_1.JPEG"
    assert ds.images[2].path == dataset_root / "train" / TRAIN_B / f"{TRAIN_B}_1.JPEG"
    assert list(ds.labels) == [r.synset for r in ds.images]
    assert list(ds.split_indices("val")) == [5]
    assert ds.layout == "{split}/{synset}/{file_name} + {split}.json"


def test_known_defects_are_skipped_counted_and_warned_once(dataset_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_partimagenet(dataset_root)
    defect_warnings = [w for w in caught if issubclass(w.category, DatasetDefectWarning)]
    assert len(defect_warnings) == 1
    message = str(defect_warnings[0].message)
    for reason, ids in DEFECT_IDS.items():
        assert ds.defects[reason] == len(ids)
        assert f"{reason}: {len(ids)}" in message
    assert ds.defects[POLYGON_DROPPED] == len(DROPPED_POLYGON_IDS)
    assert "skipped 6 part annotations" in message
    train_kept = [a["id"] for anns in ds.annotations[:5] for a in anns]
    assert train_kept == KEPT_TRAIN_IDS
    # The annotation that lost its 2-point polygon keeps its valid 3x3 rectangle only.
    (kept_109,) = [a for a in ds.annotations[3] if a["id"] == 109]
    assert mask_utils.area(kept_109["segmentation"]) == 9


def test_clean_dataset_warns_nothing(tmp_path):
    data = fixture_annotations()
    data["train"]["annotations"] = [
        a for a in data["train"]["annotations"] if a["id"] in (101, 102, 103)
    ]
    data["train"]["images"] = data["train"]["images"][:1]  # the others have no usable part left
    root = write_dataset(tmp_path / "clean", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_partimagenet(root)
    assert sum(ds.defects.values()) == 0


def test_rectangle_polygon_masks_exactly_its_pixels(dataset_root):
    ds = load_quietly(dataset_root)
    masks = ds.part_masks(0)
    assert sorted(masks) == [0, 1]
    # A polygon with integer corners (x0, y0)-(x1, y1) covers the pixels whose centres lie inside:
    # rows y0..y1-1, columns x0..x1-1.
    expected_head = np.zeros((H, W), dtype=bool)
    expected_head[3:8, 2:6] = True  # rect(2, 3, 6, 8)
    expected_head[1:4, 8:10] = True  # rect(8, 1, 10, 4), same part: union
    assert masks[0].dtype == bool and masks[0].shape == (H, W)
    np.testing.assert_array_equal(masks[0], expected_head)
    np.testing.assert_array_equal(masks[1], np.ones((H, W), dtype=bool))


def test_rle_annotation_and_slot_masks(dataset_root):
    ds = load_quietly(dataset_root)
    image = 3  # annotations 109 (part 3, rect(1, 1, 4, 4)) and 111 (part 0, RLE block)
    slots = ds.slot_masks(image)
    assert slots.shape == (len(taxonomy.PART_SLOTS), H, W) and slots.dtype == bool
    head, tail = taxonomy.PART_SLOTS.index("Head"), taxonomy.PART_SLOTS.index("Tail")
    expected_head = np.zeros((H, W), dtype=bool)
    expected_head[RLE_BLOCK] = True
    expected_tail = np.zeros((H, W), dtype=bool)
    expected_tail[1:4, 1:4] = True
    np.testing.assert_array_equal(slots[head], expected_head)
    np.testing.assert_array_equal(slots[tail], expected_tail)
    others = [i for i in range(len(taxonomy.PART_SLOTS)) if i not in (head, tail)]
    assert not slots[others].any()


def test_slot_masks_merge_parts_of_different_super_categories(tmp_path):
    data = fixture_annotations()
    # A Quadruped Head (id 0) and a Bird Head (id 13) on one image land in the one Head slot.
    data["train"]["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 0, "segmentation": [rect(0, 0, 2, 2)], "area": 4},
        {"id": 2, "image_id": 1, "category_id": 13, "segmentation": [rect(4, 4, 6, 6)], "area": 4},
    ]
    ds = load_quietly(write_dataset(tmp_path / "d", data))
    head = taxonomy.PART_SLOTS.index("Head")
    slots = ds.slot_masks(0)
    assert slots[head].sum() == 8 and slots.sum() == 8
    assert slots[head][0:2, 0:2].all() and slots[head][4:6, 4:6].all()


def test_image_without_parts_has_empty_masks(dataset_root):
    ds = load_quietly(dataset_root)
    assert ds.part_masks(4) == {}
    assert not ds.slot_masks(4).any()


def test_load_image_is_rgb_at_the_json_size(dataset_root):
    ds = load_quietly(dataset_root)
    img = ds.load_image(5)
    assert img.mode == "RGB" and img.size == (W, H)
    # The fixture paints each image one flat colour (id * 40 % 256, 90, 160); JPEG is near-lossless
    # on a flat colour.
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert abs(r - 40) < 4 and abs(g - 90) < 4 and abs(b - 160) < 4


def test_subset_of_splits(dataset_root):
    ds = load_quietly(dataset_root, splits=("test", "val"))
    assert [r.split for r in ds.images] == ["val", "test"]


def test_fingerprint_is_stable_and_tracks_annotations_and_files(dataset_root):
    first = load_quietly(dataset_root).fingerprint
    assert load_quietly(dataset_root).fingerprint == first
    data = fixture_annotations()
    data["test"]["annotations"][0]["area"] = 17
    write_json(dataset_root / "test.json", data["test"])
    changed_json = load_quietly(dataset_root).fingerprint
    assert changed_json != first
    image = dataset_root / "val" / VAL_A / f"{VAL_A}_1.JPEG"
    image.write_bytes(image.read_bytes() + b"\0")
    assert load_quietly(dataset_root).fingerprint != changed_json


def test_fingerprint_does_not_depend_on_layout(tmp_path):
    plain = load_quietly(write_dataset(tmp_path / "a")).fingerprint
    other = load_quietly(
        write_dataset(tmp_path / "b", images_in="JPEGImages", json_in="annotations")
    )
    assert other.fingerprint == plain


@pytest.mark.parametrize(
    ("images_in", "json_in", "nest", "layout"),
    [
        (
            "split-folders",
            "annotations",
            "",
            "{split}/{synset}/{file_name} + annotations/{split}.json",
        ),
        ("JPEGImages", "", "", "JPEGImages/{synset}/{file_name} + {split}.json"),
        (
            "JPEGImages",
            "annotations",
            "",
            "JPEGImages/{synset}/{file_name} + annotations/{split}.json",
        ),
        (
            "split-folders",
            "",
            "PartImageNet_OOD",
            "PartImageNet_OOD/{split}/{synset}/{file_name} + PartImageNet_OOD/{split}.json",
        ),
        (
            "split-folders",
            "annotations",
            "my_copy",
            "my_copy/{split}/{synset}/{file_name} + my_copy/annotations/{split}.json",
        ),
    ],
)
def test_layout_variants(tmp_path, images_in, json_in, nest, layout):
    root = tmp_path / "root"
    write_dataset(root / nest, images_in=images_in, json_in=json_in)
    ds = load_quietly(root)
    assert ds.layout == layout
    assert len(ds.images) == 7 and ds.root == root
    assert ds.load_image(6).size == (W, H)
    assert ds.part_masks(0)[0].sum() == 26


def test_release_folder_next_to_another_release(tmp_path):
    # Both releases unpacked side by side: the OOD one is found by its name.
    write_dataset(tmp_path / "PartImageNet_OOD")
    (tmp_path / "PartImageNet_Seg").mkdir()
    assert load_quietly(tmp_path).layout.startswith("PartImageNet_OOD/")


def test_root_given_as_str_with_user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_dataset(tmp_path / "pin")
    assert len(load_quietly("~/pin").images) == 7


def test_moved_copy_loads_from_its_new_place(dataset_root, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(dataset_root, moved)
    assert load_quietly(moved).images[0].path.parent.parent.parent == moved
