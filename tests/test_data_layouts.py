"""Copies of the release as people hold them: layouts in the wild, partial copies, load-time checks.

Each test builds a small tree in tmp (the hand-written fixture of data_fixtures.py, rearranged)
and checks that it loads, or that the refusal names the missing piece.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from data_fixtures import (
    TEST_A,
    TRAIN_A,
    TRAIN_B,
    VAL_A,
    fixture_annotations,
    rect,
    write_dataset,
    write_json,
)

from benchmark.config.run import config_from_dict
from benchmark.data import image_sizes, masks
from benchmark.data.errors import DatasetDefectWarning, DatasetError
from benchmark.data.layout import KNOWN_LAYOUTS
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.splits import required_splits

SPLITS = ("train", "val", "test")


def load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        return load_partimagenet(root, **kw)


def rearrange(
    base: Path, *, images: str = "{split}", nested: bool = True, json: str = "{split}.json"
) -> Path:
    """Write the fixture at `base` with images under `images` (nested per synset or flat) and
    each split's json at `json` (patterns relative to base)."""
    staging = write_dataset(base.parent / f".{base.name}-canonical")
    for split in SPLITS:
        target = base / images.format(split=split)
        for image in (staging / split).glob("*/*.JPEG"):
            dest = target / image.parent.name if nested else target
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(image, dest / image.name)
        (base / json.format(split=split)).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / f"{split}.json", base / json.format(split=split))
    shutil.rmtree(staging)
    return base


def add_macos_junk(folder: Path) -> None:
    """What unzipping on macOS leaves: __MACOSX/ with ._ twins, and .DS_Store."""
    (folder / "__MACOSX" / "train").mkdir(parents=True, exist_ok=True)
    (folder / "__MACOSX" / "._train.json").write_bytes(b"\0\5\26\7junk")
    (folder / "._train.json").write_bytes(b"\0\5\26\7junk")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


@pytest.fixture(scope="module")
def reference_fingerprint(tmp_path_factory):
    return load(write_dataset(tmp_path_factory.mktemp("ref") / "pin")).fingerprint


# --- layouts in the wild -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "nested", "json", "layout"),
    [
        (
            "images/{split}",
            True,
            "annotations/{split}.json",
            "images/{split}/{synset}/{file_name} + annotations/{split}.json",
        ),
        ("images/{split}", False, "{split}.json", "images/{split}/{file_name} + {split}.json"),
        (
            "{split}",
            False,
            "annotations/{split}/{split}.json",
            "{split}/{file_name} + annotations/{split}/{split}.json",
        ),
        (
            "{split}",
            True,
            "annotations/{split}/{split}.json",
            "{split}/{synset}/{file_name} + annotations/{split}/{split}.json",
        ),
    ],
)
def test_image_and_annotation_places(tmp_path, reference_fingerprint, images, nested, json, layout):
    root = rearrange(tmp_path / "copy", images=images, nested=nested, json=json)
    ds = load(root)
    assert ds.layout == layout
    assert ds.fingerprint == reference_fingerprint  # same files, whatever the layout
    assert ds.load_image(6).size == (16, 12) and ds.part_masks(0)[0].sum() == 26


@pytest.mark.parametrize(
    "wrappers",
    [("PartImageNet",), ("PartImageNet_OOD", "partimagenet"), ("any name", "PartImageNet_OOD")],
)
def test_wrapping_folders_with_macos_junk_at_every_level(tmp_path, reference_fingerprint, wrappers):
    root = tmp_path / "download"
    base = root.joinpath(*wrappers)
    write_dataset(base)
    add_macos_junk(root)
    add_macos_junk(base.parent)
    add_macos_junk(base)
    ds = load(root)
    prefix = "/".join(wrappers)
    assert ds.layout == f"{prefix}/{{split}}/{{synset}}/{{file_name}} + {prefix}/{{split}}.json"
    assert ds.fingerprint == reference_fingerprint


def test_three_wrapping_folders_are_too_deep(tmp_path):
    write_dataset(tmp_path / "root" / "a" / "b" / "c")
    assert len(load(tmp_path / "root" / "a").images) == 7  # two wrappers: found
    with pytest.raises(DatasetError, match="no PartImageNet_OOD layout found"):
        load(tmp_path / "root")


def test_files_that_disagree_with_the_json_are_refused(tmp_path):
    root = rearrange(tmp_path / "copy", images="images/{split}", nested=False)
    (root / "images" / "train" / f"{TRAIN_B}_2.JPEG").rename(
        root / "images" / "train" / f"{TRAIN_B}_9.JPEG"
    )
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert message.startswith("1 of 7 images listed in the annotation files are missing on disk")
    assert str(root / "images" / "train" / f"{TRAIN_B}_2.JPEG") in message


def test_nothing_found_lists_what_was_seen_and_what_each_split_lacks(tmp_path):
    root = tmp_path / "odd"
    (root / "pictures").mkdir(parents=True)
    (root / "notes").mkdir()
    write_json(root / "labels.json", {})
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert message.startswith(f"no PartImageNet_OOD layout found under dataset root {root}")
    for split in SPLITS:
        assert f"{split}/ and {split}.json are missing; this run loads the {split} split" in message
    assert f"{root}: folders notes/, pictures/, json files labels.json" in message
    assert all(layout in message for layout in KNOWN_LAYOUTS)


def test_zips_where_image_folders_should_be_point_to_prepare(tmp_path):
    root = write_dataset(tmp_path / "copy")
    shutil.rmtree(root / "test")
    (root / "test.zip").write_bytes(b"PK\5\6" + b"\0" * 18)
    with pytest.raises(DatasetError) as err:
        load(root)
    message = str(err.value)
    assert f"test/ is missing (its annotations are in {root / 'test.json'})" in message
    assert f"{root / 'test.zip'} is there instead of a folder" in message
    assert f"python -m benchmark prepare {root} --out DIR" in message


def test_a_folder_holding_the_downloaded_archive_points_to_prepare(tmp_path):
    (tmp_path / "downloads").mkdir()
    archive = tmp_path / "downloads" / "PartImageNet_OOD.zip"
    archive.write_bytes(b"PK\5\6" + b"\0" * 18)
    with pytest.raises(DatasetError) as err:
        load(tmp_path / "downloads")
    assert (
        f"{archive} is an archive: unpack it with `python -m benchmark prepare {archive} --out DIR`"
    ) in str(err.value)


# --- partial copies ------------------------------------------------------------------------------


@pytest.fixture
def train_val_copy(tmp_path):
    root = write_dataset(tmp_path / "copy")
    shutil.rmtree(root / "test")
    (root / "test.json").unlink()
    return root


def test_missing_split_is_named_with_why_the_run_needs_it(train_val_copy):
    needed = {"val": "evaluates on the val split", "test": "evaluates on the test split"}
    with pytest.raises(DatasetError) as err:
        load(train_val_copy, needed=needed)
    assert "test/ and test.json are missing; this run evaluates on the test split" in str(err.value)
    assert "val/" not in str(err.value).split("Saw")[0]  # only the missing split is named


def test_train_val_copy_loads_for_a_run_that_needs_only_them(train_val_copy):
    ds = load(train_val_copy, needed={"train": "trains", "val": "evaluates on the val split"})
    assert ds.splits == ("train", "val")
    assert [r.split for r in ds.images] == ["train"] * 5 + ["val"]
    assert ds.images[5].synset == VAL_A


def test_present_splits_are_loaded_even_when_not_needed(tmp_path, reference_fingerprint):
    # A full copy gives the same images, indices and fingerprint whatever a run needs.
    ds = load(write_dataset(tmp_path / "copy"), needed={"val": "evaluates on the val split"})
    assert ds.splits == SPLITS and ds.fingerprint == reference_fingerprint
    assert ds.images[6].synset == TEST_A


def test_unneeded_split_with_json_but_no_images_is_left_out(train_val_copy):
    write_json(train_val_copy / "test.json", fixture_annotations()["test"])  # test.zip not unpacked
    ds = load(train_val_copy, needed={"val": "evaluates on the val split"})
    assert ds.splits == ("train", "val")


def test_training_cli_names_the_split_training_lacks(train_val_copy, tmp_path, capsys):
    from benchmark.training.__main__ import main as train_main

    shutil.rmtree(train_val_copy / "val")
    with pytest.raises(SystemExit) as exit_:
        train_main(["--data", str(train_val_copy), "--out", str(tmp_path / "weights")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert (
        "val/ is missing (its annotations are in "
        f"{train_val_copy / 'val.json'}); this run selects the trained backbone"
    ) in err


def _cfg(**sections) -> object:
    raw = {"data": {"source": "partimagenet", "root": "/nowhere"}, **sections}
    return config_from_dict(raw)


def test_required_splits_follow_the_config(tmp_path):
    assert list(required_splits(_cfg())) == ["train", "val", "test"]  # trains, evaluates on test
    random_val = _cfg(
        backbone={"weights": "random"}, episodes={"split": "val"}, learners=["protonet"]
    )
    assert required_splits(random_val) == {"val": "evaluates on the val split"}
    simpleshot = _cfg(backbone={"weights": "random"}, learners=["protonet", "simpleshot"])
    why = required_splits(simpleshot)
    assert list(why) == ["train", "test"] and "simpleshot" in why["train"]
    trained = required_splits(_cfg(episodes={"split": "val"}))
    assert list(trained) == ["train", "val"]
    assert "evaluates on the val split" in trained["val"] and "backbone" in trained["val"]


def test_required_splits_read_the_episode_file_split(tmp_path):
    from episodes import EpisodeSampler, save_episodes
    from episodes.taxonomy import class_splits

    labels = [s for s, split in class_splits().items() if split == "val" for _ in range(4)]
    sampler = EpisodeSampler(
        labels, seed=0, split="val", n_way=5, k_shot=1, n_query=2, n_episodes=2
    )
    path = tmp_path / "val.episodes.json"
    save_episodes(
        path, [sampler[0], sampler[1]], settings=sampler.settings, dataset_fingerprint="x" * 64
    )
    cfg = _cfg(backbone={"weights": "random"}, episodes={"file": str(path)}, learners=["protonet"])
    assert required_splits(cfg) == {"val": "evaluates on the val split (episodes.file)"}


# --- image sizes at load, cached by fingerprint --------------------------------------------------


def test_image_sizes_are_checked_once_per_fingerprint(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "copy")
    cache = tmp_path / "cache"
    reads = []
    real = image_sizes.header_size
    monkeypatch.setattr(image_sizes, "header_size", lambda p: reads.append(p) or real(p))
    ds = load(root, cache_dir=cache)
    assert len(reads) == 7
    (record,) = (cache / "image-sizes").iterdir()
    assert record.name == f"{ds.fingerprint}.json"
    load(root, cache_dir=cache)
    assert len(reads) == 7  # the record says this dataset passed
    record.write_text('{"fingerprint": "something else"}')  # a record that does not verify
    load(root, cache_dir=cache)
    assert len(reads) == 14
    load(root)  # no cache folder: checked every time
    assert len(reads) == 21


def test_size_mismatch_is_not_hidden_by_a_record_of_another_copy(tmp_path):
    cache = tmp_path / "cache"
    good = write_dataset(tmp_path / "good")
    load(good, cache_dir=cache)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    data = fixture_annotations()
    data["val"]["images"][0]["height"] = 13  # another json: another fingerprint
    write_json(bad / "val.json", data["val"])
    with pytest.raises(DatasetError, match=r"in val\.json says 16x13"):
        load(bad, cache_dir=cache)


def test_unreadable_image_header_is_refused_at_load(tmp_path):
    root = write_dataset(tmp_path / "copy")
    (root / "val" / VAL_A / f"{VAL_A}_1.JPEG").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="1 of 7 images have no header PIL can read"):
        load(root)


# --- defects: images without usable parts, the warning's wording ---------------------------------


def test_images_without_usable_parts_are_counted_and_warned(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_partimagenet(write_dataset(tmp_path / "copy"))
    # Image 5 lists no annotation; images 2 and 3 lose all of theirs to defects.
    assert ds.defects[masks.NO_PARTS] == 3
    (warning,) = [w for w in caught if issubclass(w.category, DatasetDefectWarning)]
    assert "3 images have no usable part annotation" in str(warning.message)
    assert ds.part_masks(4) == {}


def test_a_dropped_polygon_alone_is_not_reported_as_zero_skipped(tmp_path):
    data = fixture_annotations()
    data["train"]["images"] = data["train"]["images"][:1]
    data["train"]["annotations"] = [a for a in data["train"]["annotations"] if a["id"] == 101]
    data["train"]["annotations"][0]["segmentation"] = [rect(2, 3, 6, 8), [0, 0, 1, 1]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_partimagenet(write_dataset(tmp_path / "copy", data))
    (warning,) = [w for w in caught if issubclass(w.category, DatasetDefectWarning)]
    message = str(warning.message)
    assert "skipped" not in message
    assert "dropped 1 polygons of < 3 points from annotations kept" in message
    assert dict(ds.defects) == {masks.POLYGON_DROPPED: 1}
    assert TRAIN_A == ds.images[0].synset
