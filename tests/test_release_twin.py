"""The release-shaped twin: the real train file names, the download's shape, what prepare and the
loader make of it; and bench/bench_release_scale.py at a tiny scale."""

from __future__ import annotations

import gzip
import io
import math
import sys
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.decode import to_rgb
from benchmark.data.errors import DatasetDefectWarning
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.release import facts as release
from benchmark.data.release import train_files
from benchmark.data.release.prepare import prepare_release
from benchmark.data.release.train_files import release_train_files
from benchmark.data.twin import release_archive as synth_release
from benchmark.data.twin.generate import plan_counts
from benchmark.data.twin.release_archive import generate_release_archive, release_plan
from episodes.taxonomy import classes

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCALE = 0.001  # one image per class: 158 images


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return generate_release_archive(
        tmp_path_factory.mktemp("release"), scale=SCALE, workers=2, progress=False
    )


def test_train_files_are_the_release_train_split():
    names = release_train_files()
    assert len(names) == 16540 == len(set(names))
    published = {c.synset: c.train_images for c in classes() if c.split == "train"}
    assert Counter(n.split("_", 1)[0] for n in names) == published
    assert names[:2] == ["n04252225_8354.JPEG", "n04146614_18045.JPEG"]  # train.json's order


def test_a_changed_train_file_list_is_refused(tmp_path, monkeypatch):
    text = gzip.decompress(train_files.TRAIN_FILES.read_bytes()).decode()
    changed = tmp_path / "list.txt.gz"
    changed.write_bytes(gzip.compress(text.replace("n04252225_8354", "n04252225_8355").encode()))
    monkeypatch.setattr(train_files, "TRAIN_FILES", changed)
    with pytest.raises(RuntimeError, match="not the recorded train file list"):
        release_train_files()
    monkeypatch.setattr(train_files, "TRAIN_FILES", tmp_path / "absent.gz")
    with pytest.raises(RuntimeError, match="cannot read"):
        release_train_files()


def test_plan_full_and_scaled():
    full = release_plan(1.0)
    assert {s: len(v) for s, v in full.items()} == release.SPLIT_IMAGES
    assert full["train"] == release_train_files()
    assert Counter(n.split("_", 1)[0] for n in full["test"]) == plan_counts(full=True)["test"]
    small = release_plan(0.1)
    per_class = Counter(n.split("_", 1)[0] for n in full["train"])
    assert Counter(n.split("_", 1)[0] for n in small["train"]) == {
        s: math.ceil(n * 0.1) for s, n in per_class.items()
    }
    order = {n: i for i, n in enumerate(full["train"])}
    assert [order[n] for n in small["train"]] == sorted(order[n] for n in small["train"])
    with pytest.raises(ValueError, match="scale"):
        release_plan(0)


def test_image_sizes_are_imagenet_like():
    sizes = Counter(synth_release.image_size_of(n, 0) for n in release_train_files()[:2000])
    assert set(sizes) <= {s for s, _ in synth_release.IMAGE_SIZES}
    assert sizes[(500, 375)] / 2000 == pytest.approx(0.45, abs=0.05)


def test_archive_has_the_downloads_shape(archive):
    with zipfile.ZipFile(archive) as outer:
        names = outer.namelist()
        assert names == ["train.zip", "val.zip", "test.zip", "train.json", "val.json", "test.json"]
        with outer.open("test.zip") as f, zipfile.ZipFile(f) as inner:
            members = inner.infolist()
            assert len(members) == 30  # one per test class at this scale
            assert all(
                m.filename.startswith("test/n") and m.compress_type == zipfile.ZIP_STORED
                for m in members
            )
            jpeg = inner.read(members[0])
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size in {s for s, _ in synth_release.IMAGE_SIZES}
    assert 50_000 < len(jpeg) < 250_000  # photo-like JPEG sizes (the release: ~110 KB)


def test_archive_is_deterministic_whatever_the_workers(archive, tmp_path):
    again = generate_release_archive(tmp_path, scale=SCALE, workers=1, progress=False)
    assert again.read_bytes() == archive.read_bytes()
    # the same parameters reuse the archive; others rebuild it
    assert generate_release_archive(tmp_path, scale=SCALE, workers=1, progress=False) == again


def test_prepare_and_load_the_archive(archive, tmp_path):
    report = prepare_release(archive, tmp_path / "prepared", allow_partial=True)
    assert report.images == {"train": 109, "val": 19, "test": 30}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        dataset = load_partimagenet(tmp_path / "prepared", cache_dir=tmp_path / "cache")
    plan = release_plan(SCALE)
    train = [rec for rec in dataset.images if rec.split == "train"]
    assert [rec.path.name for rec in train] == plan["train"]
    # masks (from the json's polygons, in stored-image coordinates) fit the decoded image
    i = int(dataset.split_indices("test")[0])
    with Image.open(dataset.images[i].path) as image:
        rgb = np.asarray(to_rgb(image))
    masks = dataset.slot_masks(i)
    assert masks.shape[1:] == rgb.shape[:2]
    assert masks.any()


@pytest.mark.slow
def test_bench_release_scale_runs_at_a_tiny_scale(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    import bench_release_scale

    res = bench_release_scale.main(
        [
            "--scale",
            str(SCALE),
            "--workers",
            "1",
            "--quiet",
            "--model",
            "resnet10t",
            "--image-size",
            "64",
            "--goal-model",
            "resnet10t",
            "--goal-size",
            "64",
            "--extract-images",
            "16",
            "--goal-images",
            "16",
            "--forward-batches",
            "1",
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    out = capsys.readouterr().out
    assert res["generate"]["images"] == 158
    assert res["prepare"]["images"] == {"train": 109, "val": 19, "test": 30}
    assert res["train_files"]["images"] == res["train_cache"]["images"] == 109
    assert all(r["peak_rss_mib"] > 10 and r["wall_s"] > 0 for r in res.values())
    assert res["extract"]["n_images"] == 16
    assert "| prepare " in out and "decoded-image cache build" in out


@pytest.mark.parametrize("inner_compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_inner_zips_are_read_in_place_when_stored(tmp_path, inner_compression):
    from benchmark.data.release.unpack import collect

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("train/n01/n01_1.JPEG", b"jpeg bytes " * 100)
        z.writestr("train/n01/n01_2.JPEG", b"other bytes")
    outer = tmp_path / "PartImageNet_OOD.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("train.json", b"{}")
        z.writestr(zipfile.ZipInfo("train.zip"), inner.getvalue(), compress_type=inner_compression)
    staging = tmp_path / "staging"
    collected = collect(outer, staging)
    try:
        files = {f.name: f for f in collected.files}
        assert set(files) == {"train.json", "n01_1.JPEG", "n01_2.JPEG"}
        with files["n01_1.JPEG"].open() as f:
            assert f.read() == b"jpeg bytes " * 100
        with files["n01_2.JPEG"].open() as f:
            assert f.read() == b"other bytes"
        # a stored inner zip is not copied out (disk: the archive once, not twice)
        assert staging.exists() == (inner_compression == zipfile.ZIP_DEFLATED)
    finally:
        collected.close()
