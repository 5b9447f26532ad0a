"""Plots are written as real, non-blank PNG images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from results_factories import fake_records

from results.plots import plot_accuracy_vs_shots, plot_episode, plot_super_categories
from results.tables import accuracy_table, super_category_table


def _assert_png(path, min_side=100):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert min(image.shape[:2]) >= min_side
    assert image[..., :3].std() > 0.01  # not a blank canvas


@pytest.fixture()
def frame():
    rows = []
    for k, p in ((1, 0.5), (5, 0.7)):
        rows += fake_records("protonet", p, 15, k_shot=k, run_id=f"r{k}")
        rows += fake_records("part_protonet", p + 0.1, 15, seed=1, k_shot=k, run_id=f"r{k}")
    frame = pd.DataFrame(rows)
    frame["accuracy"] = frame["correct"] / frame["total"]
    return frame


def test_accuracy_against_shots(frame, tmp_path):
    _assert_png(plot_accuracy_vs_shots(accuracy_table(frame), tmp_path / "shots.png"))


def test_super_categories_one_setting_only(frame, tmp_path):
    table = super_category_table(frame)
    with pytest.raises(ValueError, match="2 settings"):
        plot_super_categories(table, tmp_path / "x.png")
    _assert_png(plot_super_categories(table[table["k_shot"] == 1], tmp_path / "super.png"))


def test_episode_with_masks_and_predictions(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(7)]
    masks = [np.zeros((13, 64, 64), dtype=bool) for _ in range(7)]
    for m in masks:
        m[0, 10:30, 10:30] = True
        m[1, 30:60, 20:50] = True
    path = plot_episode(
        images[:2],
        ["cat", "dog"],
        images[2:],
        ["cat"] * 3 + ["dog"] * 2,
        ["cat", "dog", "cat", "dog", "dog"],
        tmp_path / "episode.png",
        support_masks=masks[:2],
        query_masks=masks[2:],
        slot_names=["Head", "Body"] + ["x"] * 11,
    )
    _assert_png(path)
    with pytest.raises(ValueError, match="one of each per query"):
        plot_episode(images[:2], ["cat", "dog"], images[2:], ["cat"], ["cat"], tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"\(H,W,3\) uint8"):
        plot_episode([images[0].astype(np.float32)], ["cat"], [], [], [], tmp_path / "e.png")


def test_write_plots_from_records(frame, tmp_path):
    from results.plots import write_plots

    paths = write_plots(frame, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "accuracy_vs_shots.png",
        "super_category_r1_test_5_1_5.png",
        "super_category_r5_test_5_5_5.png",
    ]
    for path in paths:
        _assert_png(path)
