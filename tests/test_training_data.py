"""Training data: the toy dataset other training tests use, seeded augmentation, mask alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.models.part_head import label_map_from_slot_masks, part_seg_loss, slot_coverage
from benchmark.training.data import SplitImages, derive_seed, train_class_keys
from episodes.taxonomy import PART_SLOTS, split_classes

TOY_SIZE = 48
HEAD, BODY = PART_SLOTS.index("Head"), PART_SLOTS.index("Body")


class ToyPartDataset(PartDataset):
    """In-memory PartDataset: per class a coloured body rectangle and a head disc whose colour
    and position depend on the class, over seeded noise. Slot masks are exact."""

    def _draw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rec = self.images[i]
        c = int(rec.synset[1:]) % 997
        rng = np.random.default_rng([c, i])
        s = TOY_SIZE
        yy, xx = np.mgrid[:s, :s]
        pixels = rng.integers(0, 60, (s, s, 3)).astype(np.uint8)
        top, left = 14 + rng.integers(-3, 4), 8 + rng.integers(-3, 4)
        body = (yy >= top) & (yy < top + 18) & (xx >= left) & (xx < left + 26)
        cy, cx = top - 4 + (c % 3) * 6, left + 26 + (c % 2) * 4
        head = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 36) & ~body
        palette = np.array(
            [
                [220, 40, 40],
                [40, 200, 60],
                [50, 70, 220],
                [230, 210, 40],
                [200, 60, 210],
                [40, 210, 210],
                [240, 140, 30],
            ]
        )
        pixels[body] = palette[c % 7]
        pixels[head] = palette[(c // 7) % 7]
        masks = np.zeros((len(PART_SLOTS), s, s), dtype=bool)
        masks[BODY], masks[HEAD] = body, head
        return pixels, masks

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self._draw(i)[0])

    def slot_masks(self, i: int) -> np.ndarray:
        return self._draw(i)[1]


def make_toy_dataset(
    n_train_classes: int = 6,
    per_train_class: int = 8,
    n_val_classes: int = 5,
    per_val_class: int = 4,
) -> ToyPartDataset:
    records: list[ImageRecord] = []
    for split, n_classes, per_class in (
        ("train", n_train_classes, per_train_class),
        ("val", n_val_classes, per_val_class),
    ):
        for synset in split_classes(split)[:n_classes]:
            for k in range(per_class):
                i = len(records)
                records.append(
                    ImageRecord(
                        i,
                        i + 1,
                        split,
                        synset,
                        f"{synset}_{k}.JPEG",
                        Path(f"/nonexistent/{synset}_{k}.JPEG"),
                        TOY_SIZE,
                        TOY_SIZE,
                    )
                )
    return ToyPartDataset(
        Path("/toy"),
        "toy",
        records,
        [[] for _ in records],
        fingerprint=f"toy-{n_train_classes}-{per_train_class}-{n_val_classes}-{per_val_class}",
    )


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _split_images(ds, **kw) -> SplitImages:
    args = dict(
        image_size=32,
        mean=MEAN,
        std=STD,
        augment=True,
        seed=3,
        with_masks=True,
        class_keys=train_class_keys(),
    )
    args.update(kw)
    return SplitImages(ds, "train", **args)


def test_labels_index_the_109_train_classes():
    ds = make_toy_dataset()
    images = _split_images(ds)
    keys = train_class_keys()
    assert len(keys) == 109
    for j in (0, 9, len(images) - 1):
        assert keys[int(images[j][1])] == ds.images[int(images.indices[j])].synset


def test_augmentation_is_a_function_of_seed_epoch_and_image():
    ds = make_toy_dataset()
    a, b = _split_images(ds), _split_images(ds)
    assert torch.equal(a[3][0], b[3][0])  # same seed, epoch, image -> same pixels
    b.set_epoch(1)
    assert not torch.equal(a[3][0], b[3][0])
    c = _split_images(ds, seed=4)
    assert not torch.equal(a[3][0], c[3][0])
    state = torch.random.get_rng_state()
    _ = a[5]
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert derive_seed(1, 2, 3) != derive_seed(1, 3, 2)


def test_masks_follow_the_image_through_crop_and_flip():
    ds = make_toy_dataset()
    images = _split_images(ds, mean=(0, 0, 0), std=(1, 1, 1))
    body_colour = None
    for epoch in range(4):  # several crops and flips
        images.set_epoch(epoch)
        image, _, label_map = images[0]
        assert image.shape == (3, 32, 32) and label_map.shape == (32, 32)
        body = label_map == BODY
        assert body.sum() > 20
        colour = image[:, body].median(dim=1).values
        # The body is one flat colour: pixels under the (nearest-resized) body mask have it.
        inside = (image[:, body] - colour[:, None]).abs().max(dim=0).values
        assert (inside < 0.05).float().mean() > 0.9
        body_colour = colour if body_colour is None else body_colour
        assert torch.allclose(colour, body_colour, atol=0.02)


def test_split_images_refuse_other_splits_and_unknown_classes():
    ds = make_toy_dataset()
    with pytest.raises(ValueError, match="another split"):
        _split_images(ds, indices=ds.split_indices("val"))
    bad = make_toy_dataset()
    rec = bad.images[0]
    bad.images[0] = ImageRecord(
        rec.index,
        rec.image_id,
        "train",
        split_classes("test")[0],
        rec.file_name,
        rec.path,
        rec.height,
        rec.width,
    )
    with pytest.raises(ValueError, match="outside the 109 train classes"):
        _split_images(bad)


def test_label_map_and_slot_coverage():
    masks = torch.zeros(13, 6, 6, dtype=torch.bool)
    masks[HEAD, :3, :4] = True
    masks[BODY, :, 3:] = True  # overlaps the head at [:3, 3]: the lower slot index (Head) wins
    labels = label_map_from_slot_masks(masks)
    assert labels[0, 3] == HEAD and labels[5, 5] == BODY and labels[5, 0] == 13
    coverage = slot_coverage(labels[None], (2, 2), 14)[0]  # 3x3-pixel cells
    assert coverage.shape == (14, 2, 2)
    assert torch.allclose(coverage.sum(0), torch.ones(2, 2))
    # top-right cell (rows 0-2, cols 3-5): 3 head pixels (col 3), 6 body pixels
    assert coverage[HEAD, 0, 1] == pytest.approx(3 / 9) and coverage[BODY, 0, 1] == pytest.approx(
        6 / 9
    )
    assert coverage[HEAD, 0, 0] == 1 and coverage[13, 1, 0] == 1 and coverage[BODY, 1, 1] == 1
    # the loss is smallest when the head's softmax equals the coverage
    exact = part_seg_loss(coverage.clamp_min(1e-6).log()[None], labels[None])
    majority = part_seg_loss(
        torch.nn.functional.one_hot(coverage.argmax(0), 14).permute(2, 0, 1)[None].float() * 20,
        labels[None],
    )
    assert exact < majority
