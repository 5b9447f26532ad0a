"""Round trip: what the synthetic twin writes, the loader reads back, masks included."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections import defaultdict

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from pycocotools.coco import COCO

from benchmark.data.errors import DatasetDefectWarning
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.twin.generate import generate_twin
from episodes import taxonomy

# pycocotools' decode trips a harmless numpy-2 DeprecationWarning (in the twin's writer and in
# the reference annToMask below).
pytestmark = pytest.mark.filterwarnings("ignore:.*copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = generate_twin(
        tmp_path_factory.mktemp("twin") / "twin", images_per_class=1, image_size=64, seed=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetDefectWarning)  # the twin has no defects
        dataset = load_partimagenet(root)
    return root, dataset


def test_twin_has_the_release_classes_splits_super_categories_and_parts(twin):
    root, ds = twin
    by_split = defaultdict(set)
    for rec in ds.images:
        by_split[rec.split].add(rec.synset)
    # The OOD release: 109 / 19 / 30 classes, 158 in all, in 11 super-categories.
    assert {s: len(v) for s, v in by_split.items()} == {"train": 109, "val": 19, "test": 30}
    assert {s: v == set(taxonomy.split_classes(s)) for s, v in by_split.items()} == {
        "train": True,
        "val": True,
        "test": True,
    }
    supers = taxonomy.class_super_categories()
    assert len({supers[s] for s in ds.labels}) == 11
    for split in taxonomy.SPLITS:
        cats = json.loads((root / f"{split}.json").read_text())["categories"]
        assert len(cats) == 40
        assert [(c["id"], c["name"]) for c in cats] == [(p.id, p.name) for p in taxonomy.parts()]
    assert sum(ds.defects.values()) == 0
    assert ds.layout == "{split}/{synset}/{file_name} + {split}.json"


def _inside_and_edge_distance(
    polygons: list[list[float]],
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Geometry of pixel centres (x + 0.5, y + 0.5), independent of pycocotools.

    Returns (inside any polygon (H, W) bool, distance to the nearest polygon edge (H, W)).
    Only pixels near the polygons' bounding box are measured; the others get distance inf.
    """
    corners = [np.asarray(p, dtype=float).reshape(-1, 2) for p in polygons]
    lo = np.floor(np.min([c.min(0) for c in corners], axis=0) - 2).clip(0).astype(int)
    hi = np.ceil(np.max([c.max(0) for c in corners], axis=0) + 2).astype(int)
    x1, y1 = min(hi[0], width), min(hi[1], height)
    ys, xs = np.mgrid[lo[1] : y1, lo[0] : x1]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)  # (P, 2)
    inside = np.zeros(len(centres), dtype=bool)
    distance = np.full(len(centres), np.inf)
    for c in corners:
        inside |= MplPath(c).contains_points(centres)
        a, ab = c, np.roll(c, -1, axis=0) - c  # edges a -> a + ab
        t = np.clip(
            ((centres[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1
        )  # (P, V)
        nearest = a + t[..., None] * ab
        distance = np.minimum(distance, np.linalg.norm(centres[:, None] - nearest, axis=-1).min(1))
    full_inside = np.zeros((height, width), dtype=bool)
    full_distance = np.full((height, width), np.inf)
    full_inside[lo[1] : y1, lo[0] : x1] = inside.reshape(xs.shape)
    full_distance[lo[1] : y1, lo[0] : x1] = distance.reshape(xs.shape)
    return full_inside, full_distance


def test_every_twin_mask_matches_its_polygons(twin):
    root, ds = twin
    n_checked = 0
    for split in taxonomy.SPLITS:
        data = json.loads((root / f"{split}.json").read_text())
        reference = COCO()
        reference.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            reference.createIndex()
        index_of = {(r.split, r.image_id): r.index for r in ds.images}
        for img in data["images"]:
            i = index_of[(split, img["id"])]
            h, w = img["height"], img["width"]
            anns = reference.imgToAnns[img["id"]]
            masks = ds.part_masks(i)
            assert sorted(masks) == sorted({a["category_id"] for a in anns})
            for part, mask in masks.items():
                mine = [a for a in anns if a["category_id"] == part]
                # Exactly the union of pycocotools' own annToMask of the file's annotations...
                coco_union = np.any([reference.annToMask(a) > 0 for a in mine], axis=0)
                np.testing.assert_array_equal(mask, coco_union)
                # ...and the polygons' own shape: every pixel whose centre lies more than one
                # pixel from an edge is in the mask iff it is inside (pycocotools rounds
                # vertices to a grid, so pixels along an edge may go either way).
                inside, distance = _inside_and_edge_distance(
                    [p for a in mine for p in a["segmentation"]], h, w
                )
                clear = distance > 1.0
                where = (split, img["file_name"], part)
                assert mask[inside & clear].all(), where
                assert not mask[~inside & clear].any(), where
                n_checked += 1
            slots = ds.slot_masks(i)
            expected = np.zeros_like(slots)
            for part, mask in masks.items():
                expected[taxonomy.parts()[part].slot_index] |= mask
            np.testing.assert_array_equal(slots, expected)
    assert n_checked > 158  # several parts per image


def test_twin_images_load_at_their_json_size(twin):
    _, ds = twin
    for i in (0, len(ds.images) // 2, len(ds.images) - 1):
        img = ds.load_image(i)
        assert img.mode == "RGB" and img.size == (ds.images[i].width, ds.images[i].height)
