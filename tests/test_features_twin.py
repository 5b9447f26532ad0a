"""Features on the synthetic twin read through the real loader (JPEG files + COCO polygons)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from benchmark.features.extraction import extract_features
from benchmark.features.feature_set import N_SLOTS, PRESENCE_MIN_AREA
from benchmark.models.backbones import build_backbone

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

SIZE = 64  # twin images are 64x64; test_resnet (stride 32) gives a 2x2 grid of 32x32-pixel cells


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from benchmark.data.partimagenet import load_partimagenet
    from benchmark.data.twin.generate import generate_twin

    root = generate_twin(
        tmp_path_factory.mktemp("twin") / "twin", images_per_class=1, image_size=SIZE
    )
    return root, load_partimagenet(root)


def test_oracle_part_features_follow_the_annotated_masks(twin):
    _, dataset = twin
    backbone = build_backbone("test_resnet", image_size=SIZE)
    indices = dataset.split_indices("test")[:12]
    fs = extract_features(dataset, indices, backbone, device="cpu", batch_size=5, progress=False)
    assert fs.part_present.any(), "the twin's objects have parts"
    for row, i in enumerate(indices):
        masks = torch.from_numpy(dataset.slot_masks(int(i))).float()
        assert masks.shape == (N_SLOTS, SIZE, SIZE)
        assert torch.equal(fs.part_present[row], masks.mean(dim=(1, 2)) >= PRESENCE_MIN_AREA)
        x = backbone.transform(dataset.load_image(int(i)))[None]
        with torch.inference_mode():
            fmap, pooled = backbone.feature_map(x)
        torch.testing.assert_close(fs.embeddings[row].float(), pooled[0], atol=2e-3, rtol=2e-3)
        cover = masks.view(N_SLOTS, 2, 32, 2, 32).mean(dim=(2, 4))
        for slot in torch.nonzero(fs.part_present[row]).flatten().tolist():
            expected = (fmap[0] * cover[slot]).sum(dim=(1, 2)) / cover[slot].sum()
            torch.testing.assert_close(
                fs.part_embeddings[row, slot].float(), expected, atol=2e-3, rtol=2e-3
            )


def test_bench_runs_on_the_twin(twin, tmp_path):
    root, _ = twin
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(
        [
            "--model",
            "test_resnet",
            "--image-size",
            str(SIZE),
            "--n-images",
            "16",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--device",
            "cpu",
            "--data",
            str(root),
            "--json",
            str(tmp_path / "f.json"),
        ]
    )
    # the script read the twin through the real loader with the settings asked for, and its
    # derived figures are computed from its measured ones (speed itself is not a unit test's job)
    assert (figures["model"], figures["image_size"], figures["n_images"]) == (
        "test_resnet",
        SIZE,
        16,
    )
    assert (figures["device"], figures["precision"], figures["masks"]) == (
        "cpu",
        "float32",
        "oracle",
    )
    ratio = figures["extract_images_per_s"] / figures["forward_images_per_s"]
    assert figures["extract_over_forward"] == pytest.approx(ratio, abs=0.01)
    assert figures["data_path_cost"] == pytest.approx(1 - figures["extract_over_forward"], abs=2e-3)
    assert json.loads((tmp_path / "f.json").read_text()) == figures
