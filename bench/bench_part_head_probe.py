"""Can a part head on the demo's frozen, cached backbone segment? A feasibility probe.

Trains a small multi-stage decoder (stride 8 + 16 + last maps, 1x1 projections summed at
stride 8, conv3x3, conv1x1 to the 13 slots + background) with per-pixel cross-entropy on the
train split's annotations, over the frozen backbone's maps (extracted once), and reports the
pixel mIoU on the test split (the same IoU as tables/mask_quality's iou_image column). It does
not touch the pipeline: it measures whether a finer head is worth wiring in.

    PARTBENCH_CACHE=... python bench/bench_part_head_probe.py [--config 5way1shot] [--epochs 30]

The backbone is the config's cached trained checkpoint (run the config once first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.config.run import load_config
from benchmark.data.source import resolve_dataset
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.features.mask_quality import IoUCounter, one_hot_labels
from benchmark.models.part_head import N_SLOTS, label_map_from_slot_masks
from benchmark.run.components import reads_predicted_masks
from benchmark.training.weights import resolve_backbone

LABEL_SIZE = 64  # training targets: label maps at 64x64 (the input size of the demo)


class _Images(PartImageDataset):
    def __getitem__(self, k: int):
        image = super().__getitem__(k)[0]
        masks = torch.from_numpy(np.asarray(self.dataset.slot_masks(int(self.indices[k])), bool))
        labels = label_map_from_slot_masks(masks)  # (H, W), background = S
        return image, labels


def _collate(items):
    images, labels = zip(*items)
    return torch.stack(images), list(labels)


def stage_maps(backbone, dataset, indices, strides=(8, 16)):
    """[(n, C_i, h_i, w_i) float32 per stride, then the last map], and each image's labels."""
    split = SplitTransform.of(backbone.transform)
    loader = DataLoader(
        _Images(dataset, indices, split or backbone.transform, None),
        batch_size=128,
        collate_fn=_collate,
    )
    stages = [backbone.stage_index(s) for s in strides]
    maps, labels = [[] for _ in range(len(strides) + 1)], []
    backbone.model.eval()
    with torch.inference_mode():
        for images, label in loader:
            images = split.normalise(images) if split is not None else images
            _, inter = backbone.model.forward_intermediates(images, indices=stages)
            fmap, _ = backbone.feature_map(images)
            for i, m in enumerate([*inter, fmap]):
                maps[i].append(m.float())
            labels += label
    return [torch.cat(m) for m in maps], labels


class Decoder(nn.Module):
    """1x1 projections of each stage, summed at the finest one's grid -> (B, S+1, h8, w8)."""

    def __init__(self, channels, width=64):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.block = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, N_SLOTS + 1, 1),
        )

    def forward(self, maps):
        size = maps[0].shape[-2:]
        x = sum(
            F.interpolate(p(m), size=size, mode="bilinear", align_corners=False)
            for p, m in zip(self.project, maps)
        )
        return self.block(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="5way1shot")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    cfg = load_config(args.config)
    dataset = resolve_dataset(cfg.data, cfg.cache_dir)
    backbone = resolve_backbone(cfg, dataset, False, needs_part_head=reads_predicted_masks(cfg))
    start = time.perf_counter()
    train_maps, train_labels = stage_maps(backbone, dataset, dataset.split_indices("train"))
    test_maps, test_labels = stage_maps(backbone, dataset, dataset.split_indices("test"))
    extracted = time.perf_counter() - start
    targets = torch.stack(
        [
            F.interpolate(
                label_map[None, None].float(), size=(LABEL_SIZE, LABEL_SIZE), mode="nearest"
            )[0, 0].long()
            for label_map in train_labels
        ]
    )
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # seeded module init that leaves the global state as it was
        torch.manual_seed(0)
        decoder = Decoder([m.shape[1] for m in train_maps])
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-3, weight_decay=1e-4)
    n = len(targets)
    # background is most pixels: weigh classes by inverse sqrt frequency
    counts = torch.bincount(targets.flatten(), minlength=N_SLOTS + 1).float().clamp_min(1)
    weight = (counts.sum() / counts).sqrt()
    weight = weight / weight.mean()
    for _ in range(args.epochs):
        decoder.train()
        order = torch.randperm(n, generator=generator)
        for batch in order.split(64):
            logits = decoder([m[batch] for m in train_maps])
            logits = F.interpolate(
                logits, size=(LABEL_SIZE, LABEL_SIZE), mode="bilinear", align_corners=False
            )
            loss = F.cross_entropy(logits, targets[batch], weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained = time.perf_counter() - start - extracted
    decoder.eval()
    counter = IoUCounter()
    with torch.inference_mode():
        logits = decoder(test_maps)
        for b, truth in enumerate(test_labels):
            full = F.interpolate(
                logits[b : b + 1], size=truth.shape, mode="bilinear", align_corners=False
            ).argmax(1)[0]
            counter.add(one_hot_labels(full), _slot_masks(truth))
    iou = counter.iou()
    print(
        f"pixel mIoU on the test split ({len(test_labels)} images): {100 * np.nanmean(iou):.1f} "
        f"(per slot: {', '.join(f'{100 * v:.0f}' for v in iou)}); {args.epochs} epochs; "
        f"maps extracted in {extracted:.0f} s, decoder trained in {trained:.0f} s"
    )


def _slot_masks(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) labels (background = S) -> (S, H, W) bool slot masks."""
    return torch.stack([labels == s for s in range(N_SLOTS)])


if __name__ == "__main__":
    main()
