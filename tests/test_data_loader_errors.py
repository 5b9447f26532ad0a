"""Bad input to the PartImageNet loader: each error names the file, field or folder at fault."""

from __future__ import annotations

import os
import re
import warnings

import pytest
from data_fixtures import TEST_A, TRAIN_A, VAL_A, fixture_annotations, write_dataset, write_json

from benchmark.data.errors import DatasetDefectWarning, DatasetError
from benchmark.data.layout import KNOWN_LAYOUTS
from benchmark.data.partimagenet import load_partimagenet


def load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        return load_partimagenet(root, **kw)


def write_with(tmp_path, mutate):
    """The fixture, changed by mutate(data) before it is written."""
    data = fixture_annotations()
    mutate(data)
    return write_dataset(tmp_path / "pin", data)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


# --- roots and layouts -------------------------------------------------------------------------


def test_missing_root_names_path_and_layouts(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load(missing)
    message = str(err.value)
    assert str(missing) in message and "does not exist" in message and "data.root" in message
    assert all(layout in message for layout in KNOWN_LAYOUTS)


def test_root_that_is_a_file(tmp_path):
    file = tmp_path / "file.zip"
    file.write_bytes(b"PK")
    with pytest.raises(DatasetError, match="is not a folder"):
        load(file)


def test_root_in_no_known_layout_names_path_layouts_and_what_is_missing(tmp_path):
    root = tmp_path / "odd"
    (root / "images").mkdir(parents=True)
    write_json(root / "train.json", fixture_annotations()["train"])
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert message.startswith(f"dataset root {root}: ")
    assert all(layout in message for layout in KNOWN_LAYOUTS)
    assert f"train/ is missing (its annotations are in {root / 'train.json'})" in message
    assert "val/ and val.json are missing; this run loads the val split" in message
    assert "test/ and test.json are missing; this run loads the test split" in message
    assert f"Saw {root}: folders images/, json files train.json" in message


def test_two_sub_folders_are_not_guessed_between(tmp_path):
    write_dataset(tmp_path / "copy_a")
    write_dataset(tmp_path / "copy_b")
    with pytest.raises(DatasetError, match="no PartImageNet_OOD layout found"):
        load(tmp_path)


def test_seg_release_is_rejected_as_not_ood(tmp_path):
    root = tmp_path / "PartImageNet"
    (root / "images" / "train").mkdir(parents=True)
    (root / "annotations" / "train").mkdir(parents=True)
    (root / "annotations" / "train" / f"{TRAIN_A}_1.png").write_bytes(b"")
    write_json(root / "annotations" / "train.json", fixture_annotations()["train"])
    with pytest.raises(DatasetError) as err:
        load(root)
    assert "PartImageNet_Seg" in str(err.value) and "not PartImageNet_OOD" in str(err.value)
    assert str(root) in str(err.value)


def test_unknown_split_argument(tmp_path):
    with pytest.raises(DatasetError, match="valid splits are train, val, test"):
        load(write_dataset(tmp_path / "pin"), splits=("train", "dev"))


# --- not COCO ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2], "the top level is a list"),
        ({"images": [], "categories": []}, "no 'annotations' field"),
        (
            {"images": {}, "annotations": [], "categories": []},
            "field 'images' must be a list, got dict",
        ),
        (
            {"images": [], "annotations": [], "categories": "parts"},
            "field 'categories' must be a list, got str",
        ),
    ],
)
def test_json_that_is_not_coco_names_file_and_field(tmp_path, content, expected):
    root = write_dataset(tmp_path / "pin")
    write_json(root / "val.json", content)
    with pytest.raises(DatasetError) as err:
        load(root)
    assert str(root / "val.json") in str(err.value) and expected in str(err.value)


def test_invalid_json_names_file(tmp_path):
    root = write_dataset(tmp_path / "pin")
    (root / "test.json").write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'test.json'}: not a valid JSON")):
        load(root)


def test_categories_renamed_or_missing_are_listed(tmp_path):
    def mutate(data):
        cats = data["train"]["categories"]
        cats[25]["name"] = "Car Tire"
        del cats[39]
        cats.append({"id": 40, "name": "Background", "supercategory": "none"})

    root = write_with(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert str(root / "train.json") in message and "field 'categories'" in message
    assert "id 25 is 'Car Tire' in the file, 'Car Tier' in the table" in message
    assert "missing ids: 39 'Bottle Body'" in message
    assert "ids not in the table: 40 'Background'" in message


def test_image_entry_with_wrong_field_types(tmp_path):
    def mutate(data):
        data["test"]["images"][0]["height"] = "12"

    root = write_with(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        load(root)
    assert str(root / "test.json") in str(err.value)
    assert "images[0] (id 1): height='12'" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "image_id",
            99,
            "field 'image_id' names no image of the file: annotation 201 -> image_id 99",
        ),
        ("category_id", 40, "field 'category_id' is not one of the 40 part ids"),
        ("category_id", None, "annotations[0] (id 201): category_id=None"),
        ("area", "big", "annotations[0] (id 201): area='big'"),
    ],
)
def test_annotation_entry_errors_name_the_field(tmp_path, field, value, expected):
    def mutate(data):
        data["val"]["annotations"][0][field] = value

    root = write_with(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        load(root)
    assert str(root / "val.json") in str(err.value) and expected in str(err.value)


def test_annotation_without_segmentation(tmp_path):
    root = write_with(tmp_path, lambda d: d["val"]["annotations"][0].pop("segmentation"))
    with pytest.raises(DatasetError, match=r"annotations\[0\] \(id 201\): segmentation=None"):
        load(root)


def test_duplicate_image_ids(tmp_path):
    root = write_with(tmp_path, lambda d: d["train"]["images"][1].update(id=1))
    with pytest.raises(DatasetError, match="train.json: duplicate image ids: 1"):
        load(root)


# --- classes against the packaged table ------------------------------------------------------


def test_synset_not_in_the_class_table(tmp_path):
    def mutate(data):
        data["train"]["images"].append(
            {"id": 9, "file_name": "n99999999_1.JPEG", "height": 12, "width": 16}
        )

    root = write_with(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert str(root / "train.json") in message and "field 'file_name'" in message
    assert "n99999999 (e.g. n99999999_1.JPEG)" in message and "classes.csv" in message


def test_synset_of_another_split(tmp_path):
    def mutate(data):
        data["test"]["images"].append(
            {"id": 2, "file_name": f"{VAL_A}_7.JPEG", "height": 12, "width": 16}
        )

    root = write_with(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert str(root / "test.json") in message
    assert f"{VAL_A} (e.g. {VAL_A}_7.JPEG) is a val class" in message


# --- files on disk -----------------------------------------------------------------------------


def test_images_missing_on_disk_gives_count_and_first_paths(tmp_path):
    root = write_dataset(tmp_path / "pin")
    gone = [root / "train" / TRAIN_A / f"{TRAIN_A}_{n}.JPEG" for n in (1, 2)]
    gone.append(root / "test" / TEST_A / f"{TEST_A}_1.JPEG")
    for path in gone:
        path.unlink()
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert message.startswith("3 of 7 images listed in the annotation files are missing on disk")
    assert all(str(p) in message for p in gone)


@pytest.mark.parametrize(
    "name",
    [
        f"../{TRAIN_A}_1.JPEG",
        f"sub/{TRAIN_A}_1.JPEG",
        f"sub\\{TRAIN_A}_1.JPEG",
        f"{TRAIN_A}_..JPEG",
        f"/{TRAIN_A}_1.JPEG",
    ],
)
def test_file_name_that_is_not_a_bare_name_is_refused_and_never_read(tmp_path, monkeypatch, name):
    data = fixture_annotations()
    data["val"]["images"][0]["file_name"] = name
    root = write_dataset(tmp_path / "pin", data)
    # Put a file where the name points, so only the check (not a missing file) can refuse it.
    target = (root / "val" / VAL_A / name) if not os.path.isabs(name) else None
    if target is not None and "\\" not in name:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"secret")
    stat_calls = []
    real_stat = os.stat
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: stat_calls.append(str(p)) or real_stat(p, *a, **k)
    )
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert str(root / "val.json") in message and repr(name) in message and "image id 1" in message
    assert not [p for p in stat_calls if p.endswith(".JPEG")]  # no image was even stat-ed


def test_image_whose_size_disagrees_with_the_json_is_refused_at_load(tmp_path):
    root = write_with(tmp_path, lambda d: None)
    data = fixture_annotations()
    data["test"]["images"][0]["width"] = 20
    write_json(root / "test.json", data["test"])
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert message.startswith("1 of 7 images differ in size")
    assert f"{root / 'test' / TEST_A / TEST_A}_1.JPEG is 16x12" in message
    assert "in test.json says 20x12" in message
