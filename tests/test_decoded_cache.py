"""The decoded-image cache: training reads the same pixels from it as from the files, reuses a
verified set, rebuilds a damaged one, and the trained weights do not depend on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from test_training_data import MEAN, STD, make_toy_dataset

from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.data.decode import RESAMPLE, decode_rgb
from benchmark.training import TrainConfig, load_checkpoint, train_backbone
from benchmark.training.data import SplitImages, train_class_keys
from benchmark.training.decoded_cache import DecodedViews


def _images(ds, **kw) -> SplitImages:
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


def _open(images: SplitImages, cache_dir, make_view=None) -> DecodedViews:
    return DecodedViews.open(
        cache_dir,
        fingerprint=images.source.fingerprint,
        indices=images.indices,
        view_size=images.view_size,
        with_labels=images.with_masks,
        make_view=make_view or images.make_view,
    )


def _all_items(images: SplitImages, epochs=(0, 1)) -> list:
    out = []
    for epoch in epochs:
        images.set_epoch(epoch)
        out.extend(images[j] for j in range(len(images)))
    return out


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


def test_cached_views_give_the_items_of_the_files_and_are_reused(tmp_path):
    ds = make_toy_dataset(n_train_classes=3, per_train_class=4, n_val_classes=0, per_val_class=0)
    plain = _images(ds)
    cached = _images(ds)
    cached.decoded = _open(cached, tmp_path)
    _assert_same(_all_items(plain), _all_items(cached))

    calls = []

    def counting(i):
        calls.append(i)
        return plain.make_view(i)

    again = _open(plain, tmp_path, counting)
    assert calls == []  # verified and reused, nothing decoded
    assert again.nbytes > len(plain) * plain.view_size**2 * 3


def test_a_damaged_or_cut_file_is_rebuilt_with_a_warning(tmp_path):
    ds = make_toy_dataset(n_train_classes=2, per_train_class=3, n_val_classes=0, per_val_class=0)
    images = _images(ds)
    views = _open(images, tmp_path)
    reference = _all_items(_images(ds, decoded=views), epochs=(0,))
    pixels = views.folder / f"{views.key}.pixels.npy"

    raw = bytearray(pixels.read_bytes())
    raw[-5] ^= 0xFF  # one pixel changed: the header still parses, the hash does not match
    pixels.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="sha256"):
        rebuilt = _open(images, tmp_path)
    _assert_same(reference, _all_items(_images(ds, decoded=rebuilt), epochs=(0,)))

    pixels.write_bytes(pixels.read_bytes()[:200])  # cut short
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = _open(images, tmp_path)
    _assert_same(reference, _all_items(_images(ds, decoded=rebuilt), epochs=(0,)))


def test_a_set_without_label_maps_is_refused_for_training_with_masks(tmp_path):
    ds = make_toy_dataset(n_train_classes=2, per_train_class=2, n_val_classes=0, per_val_class=0)
    no_labels = _images(ds, with_masks=False)
    views = _open(no_labels, tmp_path)
    with pytest.raises(ValueError, match="label maps"):
        _images(ds, decoded=views)[0]


def test_views_of_large_images_are_reduced_and_keep_the_geometry(tmp_path):
    """A 300x375 JPEG trained at 32 px: the view is 64 px (decoded at reduced scale); the
    unaugmented item matches a full decode resized to 32 px."""
    yy, xx = np.mgrid[:300, :375]
    pixels = np.stack([xx * 255 // 375, yy * 255 // 300, np.full_like(xx, 90)], -1).astype(np.uint8)
    pixels[40:170, 60:250] = (250, 30, 30)
    path = tmp_path / "n01440764_1.JPEG"
    Image.fromarray(pixels).save(path, quality=92)
    synset = train_class_keys()[0]
    ds = PartDataset(
        tmp_path,
        "t",
        [ImageRecord(0, 1, "train", synset, path.name, path, 300, 375)],
        [[]],
        "f" * 64,
        Counter(),
    )
    images = SplitImages(
        ds,
        "train",
        image_size=32,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        augment=False,
        seed=0,
        class_keys=train_class_keys(),
    )
    assert images.view_size == 64
    got = images[0][0] * 255  # (3, 32, 32), unnormalised
    full = np.asarray(decode_rgb(path).resize((32, 32), RESAMPLE["bicubic"]), dtype=np.float32)
    diff = (got.permute(1, 2, 0).numpy() - full).__abs__()
    assert diff.mean() < 4 and np.percentile(diff, 95) < 16, (diff.mean(), diff.max())


def test_trained_weights_do_not_depend_on_the_cache(tmp_path):
    ds = make_toy_dataset(n_train_classes=6, per_train_class=6, n_val_classes=5, per_val_class=3)
    config = TrainConfig(
        batch_size=12,
        lr=0.05,
        epochs=2,
        method="classification",
        part_head="joint",
        val_episodes=5,
        val_k_shot=1,
        val_n_query=2,
    )
    common = dict(model_name="test_resnet", image_size=32, seed=0, progress=False)
    plain = train_backbone(ds, config, out_dir=tmp_path / "plain", **common)
    cached = train_backbone(
        ds,
        replace(config, decoded_cache=True),
        out_dir=tmp_path / "cached",
        decoded_cache=tmp_path / "cache",
        **common,
    )
    assert list((tmp_path / "cache" / "decoded").glob("*.json"))
    a, b = load_checkpoint(plain)["model"], load_checkpoint(cached)["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("damage", ["header is a list", "pixels path is a folder"])
def test_a_header_list_or_a_folder_for_pixels_is_rebuilt(tmp_path, damage):
    ds = make_toy_dataset(n_train_classes=2, per_train_class=3, n_val_classes=0, per_val_class=0)
    images = _images(ds)
    views = _open(images, tmp_path)
    reference = _all_items(_images(ds, decoded=views), epochs=(0,))
    if damage == "header is a list":
        views.header_path.write_text("[1, 2]")
    else:
        pixels = views.folder / f"{views.key}.pixels.npy"
        pixels.unlink()
        pixels.mkdir()
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = _open(images, tmp_path)
    _assert_same(reference, _all_items(_images(ds, decoded=rebuilt), epochs=(0,)))
