"""The synthetic twin: real on-disk format, deterministic bytes, polygons that match the pixels."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from benchmark.data.twin import generate as synth
from benchmark.data.twin.generate import MARKER, generate_twin, plan_counts, read_twin_marker
from benchmark.data.twin.render import render_image

DATA = Path(__file__).resolve().parents[1] / "episodes" / "data"
SIZE = 48  # tiny images keep the whole twin (158 images) well under a second or two


def _csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


CLASSES = _csv("classes.csv")
PARTS = _csv("parts.csv")
SUPER_OF = {r["synset"]: r["super_category"] for r in CLASSES}
ONE_PER_SUPER = list({r["super_category"]: r["synset"] for r in CLASSES}.values())


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    return generate_twin(
        tmp_path_factory.mktemp("twin") / "ood", images_per_class=1, image_size=SIZE, seed=3
    )


# --- counts ---------------------------------------------------------------------------------


def test_full_preset_counts_match_the_real_release():
    plan = plan_counts(full=True)
    # Published totals of PartImageNet_OOD (shared/partimagenet/README.md).
    assert {s: sum(c.values()) for s, c in plan.items()} == {
        "train": 16540,
        "val": 2957,
        "test": 4598,
    }
    assert {s: len(c) for s, c in plan.items()} == {"train": 109, "val": 19, "test": 30}
    assert plan["train"] == {
        r["synset"]: int(r["train_images"]) for r in CLASSES if r["split"] == "train"
    }
    for split in ("val", "test"):
        assert max(plan[split].values()) - min(plan[split].values()) <= 1


def test_default_counts_and_bad_count():
    plan = plan_counts(images_per_class=7)
    assert sorted(s for c in plan.values() for s in c) == sorted(SUPER_OF)
    assert {n for c in plan.values() for n in c.values()} == {7}
    with pytest.raises(ValueError, match="images_per_class"):
        plan_counts(images_per_class=0)


# --- on-disk format -------------------------------------------------------------------------


def test_layout_json_keys_and_categories(twin: Path):
    for split in ("train", "val", "test"):
        data = json.loads((twin / f"{split}.json").read_text())
        assert set(data) == {"images", "annotations", "categories"}
        assert data["categories"] == [
            {"id": int(r["id"]), "name": r["name"], "supercategory": r["supercategory"]}
            for r in PARTS
        ]
        expected = {r["synset"] for r in CLASSES if r["split"] == split}
        on_disk = {p.name for p in (twin / split).iterdir()}
        assert on_disk == expected
        listed = set()
        for im in data["images"]:
            assert set(im) == {"id", "file_name", "height", "width"}
            name = im["file_name"]
            synset, number = name[: -len(".JPEG")].split("_")
            assert "/" not in name and name.endswith(".JPEG") and number.isdigit()
            path = twin / split / synset / name
            with Image.open(path) as img:
                assert img.format == "JPEG" and img.size == (im["width"], im["height"]) == (
                    SIZE,
                    SIZE,
                )
            listed.add(path)
        assert listed == set((twin / split).rglob("*.JPEG"))
        assert len({im["id"] for im in data["images"]}) == len(data["images"])
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_annotations_are_parts_of_the_image_class(twin: Path):
    part_super = {int(r["id"]): r["supercategory"] for r in PARTS}
    body_ids = {int(r["id"]) for r in PARTS if r["name"].endswith(" Body")}
    for split in ("train", "val", "test"):
        data = json.loads((twin / f"{split}.json").read_text())
        synset_of = {im["id"]: im["file_name"].split("_")[0] for im in data["images"]}
        with_body = set()
        for a in data["annotations"]:
            assert set(a) == {
                "id",
                "image_id",
                "category_id",
                "segmentation",
                "area",
                "bbox",
                "iscrowd",
            }
            assert a["iscrowd"] == 0
            assert part_super[a["category_id"]] == SUPER_OF[synset_of[a["image_id"]]]
            if a["category_id"] in body_ids:
                with_body.add(a["image_id"])
        # bodies are never dropped; an occluder or the frame edge cannot hide a whole one
        assert with_body == set(synset_of)


def test_every_polygon_decodes_to_its_area_and_bbox(twin: Path):
    n = 0
    for split in ("train", "val", "test"):
        data = json.loads((twin / f"{split}.json").read_text())
        for a in data["annotations"]:
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], SIZE, SIZE))
            mask = mask_utils.decode(rle)
            assert mask.sum() > 0
            assert a["area"] == pytest.approx(float(mask.sum()))
            ys, xs = np.nonzero(mask)
            assert a["bbox"] == pytest.approx(
                [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], abs=0.01
            )
            n += 1
    assert n > 3 * 158  # several parts per image


# --- pixels match polygons ------------------------------------------------------------------


def _distance_to_colours(pixels: np.ndarray, colours: list[tuple[int, int, int]]) -> np.ndarray:
    """(n,) distance of each RGB pixel to the nearest blend of two of the part's colours
    (patterns and gradients mix them), allowing for the renderer's +-12% shading."""
    c = np.array(colours, dtype=float)
    best = np.full(len(pixels), np.inf)
    for i in range(len(c)):
        for j in range(i, len(c)):
            seg = c[j] - c[i]
            t = np.clip(((pixels - c[i]) @ seg) / max(seg @ seg, 1e-9), 0, 1)
            near = c[i] + t[:, None] * seg
            for shade in (0.88, 1.0, 1.12):
                best = np.minimum(best, np.linalg.norm(pixels - near * shade, axis=1))
    return best


@pytest.mark.parametrize("synset", ONE_PER_SUPER)
def test_part_pixels_have_the_part_colours(synset: str):
    """Inside each decoded part polygon (edges eroded), the JPEG's pixels are the part's colours;
    the same masks shifted off the part mostly are not."""
    size = 96
    for index in range(2):
        image = render_image(synset, index, seed=5, image_size=size, occlusion=False)
        pixels = np.asarray(Image.open(io.BytesIO(image.jpeg_bytes())).convert("RGB"), dtype=float)
        for ann in image.annotations:
            mask = (
                mask_utils.decode(
                    mask_utils.merge(mask_utils.frPyObjects(ann.segmentation, size, size))
                )
                > 0
            )
            inner = ndimage.binary_erosion(mask, iterations=1)
            if inner.sum() < 12:
                continue
            dist = _distance_to_colours(pixels[inner], ann.colours)
            assert np.mean(dist < 45) > 0.85, (synset, index, ann.part_id)


def test_polygons_match_the_painted_label_map():
    """The annotation of each part covers the pixels that were painted with it (IoU > 0.85)."""
    ious = []
    for synset in ONE_PER_SUPER:
        for index in range(3):
            image = render_image(synset, index, seed=2, image_size=96)
            drawn = {k: image.labels == k for k in np.unique(image.labels) if k >= 0}
            for ann in image.annotations:
                mask = (
                    mask_utils.decode(
                        mask_utils.merge(mask_utils.frPyObjects(ann.segmentation, 96, 96))
                    )
                    > 0
                )
                if mask.sum() < 30:
                    continue
                best = max((m & mask).sum() / (m | mask).sum() for m in drawn.values())
                ious.append(best)
    assert len(ious) > 40
    assert min(ious) > 0.85


def test_occluder_splits_and_hides_parts():
    """With an occluder, parts are annotated by what stays visible: less area, sometimes cut in two."""
    hidden, pieces = [], []
    for synset in ONE_PER_SUPER:
        for index in range(3):
            clear = render_image(synset, index, seed=4, image_size=96, occlusion=False)
            covered = render_image(synset, index, seed=4, image_size=96, occlusion=True)
            assert (covered.labels == -2).any()
            hidden.append(
                sum(a.area for a in clear.annotations) - sum(a.area for a in covered.annotations)
            )
            pieces.append(
                sum(len(a.segmentation) for a in covered.annotations)
                - sum(len(a.segmentation) for a in clear.annotations)
            )
    # a few pixels of slack: cut polygons rasterise a little differently along the cut
    assert min(hidden) >= -3 and np.mean(hidden) > 20
    assert max(pieces) > 0  # some part is cut in two by the occluder


# --- determinism, reuse, atomicity ----------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(twin: Path, tmp_path: Path):
    again = generate_twin(
        tmp_path / "again", images_per_class=1, image_size=SIZE, seed=3, workers=2
    )
    assert _tree_hashes(again) == _tree_hashes(twin)


def test_other_seed_other_images(tmp_path: Path):
    a = render_image(ONE_PER_SUPER[0], 0, seed=0, image_size=SIZE).jpeg_bytes()
    b = render_image(ONE_PER_SUPER[0], 0, seed=1, image_size=SIZE).jpeg_bytes()
    assert a != b
    assert render_image(ONE_PER_SUPER[0], 0, seed=0, image_size=SIZE).jpeg_bytes() == a


def test_marker_reuse_and_replacement(tmp_path: Path):
    out = tmp_path / "twin"
    generate_twin(out, images_per_class=1, image_size=32, seed=0)
    marker = read_twin_marker(out)
    assert marker["seed"] == 0 and marker["image_size"] == 32 and marker["counts"]["test"] == 30
    stamp = (out / "train.json").stat().st_mtime_ns
    generate_twin(out, images_per_class=1, image_size=32, seed=0)  # same parameters: reused
    assert (out / "train.json").stat().st_mtime_ns == stamp
    generate_twin(out, images_per_class=1, image_size=32, seed=1)  # other parameters: replaced
    assert read_twin_marker(out)["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]  # no temporary folders left


def test_refuses_to_overwrite_a_folder_that_is_not_a_twin(tmp_path: Path):
    out = tmp_path / "real"
    out.mkdir()
    (out / "train.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not a synthetic twin"):
        generate_twin(out, images_per_class=1, image_size=32)
    assert (out / "train.json").read_text() == "{}"


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path: Path, monkeypatch):
    calls = []

    def failing(job):
        calls.append(job)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(job)

    real = synth._render_class
    monkeypatch.setattr(synth, "_render_class", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_twin(tmp_path / "twin", images_per_class=1, image_size=32)
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path / "twin" / MARKER).exists()


def test_loader_reads_the_twin_back(twin: Path):
    """Round trip through the project's loader: 158 classes in 109/19/30, 40 parts, and the
    loader's masks equal the polygons' masks."""
    from benchmark.data.partimagenet import load_partimagenet

    dataset = load_partimagenet(twin)
    assert not dataset.defects
    splits = {}
    for r in dataset.images:
        splits.setdefault(r.split, set()).add(r.synset)
    assert {s: len(v) for s, v in splits.items()} == {"train": 109, "val": 19, "test": 30}
    for i in range(0, len(dataset.images), 11):
        rec = dataset.images[i]
        data = json.loads((twin / f"{rec.split}.json").read_text())
        anns = [a for a in data["annotations"] if a["image_id"] == rec.image_id]
        masks = dataset.part_masks(i)
        for pid in {a["category_id"] for a in anns}:
            polys = [p for a in anns if a["category_id"] == pid for p in a["segmentation"]]
            expected = (
                mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, SIZE, SIZE))) > 0
            )
            assert np.array_equal(masks[pid], expected)
        assert dataset.load_image(i).size == (SIZE, SIZE)
