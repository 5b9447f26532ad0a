"""Can a part head on the demo's cached backbone segment? A feasibility probe.

Trains the shipped part head (benchmark.models.part_head.PartSegHead, a top-down decoder) over
any of the backbone's stages with per-pixel cross-entropy on the train split's annotations, and
reports the pixel mIoU on the train split's first 300 images and on the test split (the same
IoU as tables/mask_quality's iou_image column: logits upsampled bilinearly to the annotation's
resolution). It explores settings the pipeline does not take (stages, input
size, end-to-end training, colour augmentation); the pipeline's own head is measured by every
run's tables/mask_quality.

    python bench/bench_part_head_probe.py [--config 5way1shot] [--epochs 20]
        [--strides 2,4,8,16] [--image-size 128] [--finetune] [--class-weights] [--colour-aug]
        [--ceiling]

- `--strides`: the backbone stages the decoder reads (the last map is always added).
- `--image-size`: the input size (default the config's backbone.image_size).
- default: the backbone is frozen and its maps are extracted once; `--finetune` trains a copy of
  the backbone end to end with the decoder (backbone lr 1e-3, decoder 3e-3, horizontal flips).
- `--class-weights`: inverse-sqrt class-frequency weights in the loss (background is most pixels).
- `--colour-aug`: with `--finetune`, each training image's channels permuted and half the time
  inverted (the twin's part colours are drawn per class, so colour says nothing about a new class).
- `--ceiling`: the resolution ceiling instead: the test split's own annotations area-pooled to
  an r x r grid and upsampled back, r = 64, 32, 16, 8 (a perfect head at that grid).

The backbone is the config's cached trained checkpoint (run the config once first). Every
random draw is seeded (module init, batch order, flips).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms

from benchmark.config.run import load_config
from benchmark.data.source import resolve_dataset
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.features.mask_quality import IoUCounter, one_hot_labels
from benchmark.models.part_head import N_SLOTS, PartSegHead, label_map_from_slot_masks
from benchmark.run.components import reads_predicted_masks
from benchmark.training.weights import resolve_backbone

EVAL_TRAIN_IMAGES = 300  # train-split images the fit is measured on


class _Images(PartImageDataset):
    def __getitem__(self, k: int):
        image = super().__getitem__(k)[0]
        masks = torch.from_numpy(np.asarray(self.dataset.slot_masks(int(self.indices[k])), bool))
        return image, label_map_from_slot_masks(masks)  # (H, W), background = S


def _collate(items):
    images, labels = zip(*items)
    return torch.stack(images), list(labels)


def _miou(logits: torch.Tensor, truths: list[torch.Tensor]) -> tuple[float, np.ndarray]:
    """Pixel mIoU of (n, S+1, h, w) logits against n (H, W) label maps at their resolution."""
    counter = IoUCounter()
    for b, truth in enumerate(truths):
        full = F.interpolate(logits[b : b + 1], size=truth.shape, mode="bilinear").argmax(1)[0]
        counter.add(one_hot_labels(full), one_hot_labels(truth))
    iou = counter.iou()
    return float(np.nanmean(iou)), iou


def ceiling(dataset) -> None:
    """The mIoU of a perfect head on an r x r grid: annotations pooled, upsampled, arg-maxed."""
    truths = [
        label_map_from_slot_masks(torch.from_numpy(np.asarray(dataset.slot_masks(int(i)), bool)))
        for i in dataset.split_indices("test")
    ]
    for r in (64, 32, 16, 8):
        pooled = [
            F.adaptive_avg_pool2d(F.one_hot(t, N_SLOTS + 1).permute(2, 0, 1)[None].float(), r)
            for t in truths
        ]
        miou, iou = _miou(torch.cat(pooled), truths)
        print(f"grid {r}x{r}: pixel mIoU {100 * miou:.1f} ({_per_slot(iou)})")


def _recolour(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> the same with each image's channels permuted and, half the time,
    inverted: the twin's part colours are random per class, so a head must not learn them."""
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(len(pixels))])
    out = torch.gather(pixels, 3, order[:, None, None, :].expand_as(pixels))
    invert = torch.rand(len(pixels), generator=generator) < 0.5
    return torch.where(invert[:, None, None, None], 255 - out, out)


def _per_slot(iou: np.ndarray) -> str:
    return " ".join(f"{100 * v:.0f}" for v in iou)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="5way1shot")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--strides", default="2,4,8,16")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--class-weights", action="store_true")
    parser.add_argument("--colour-aug", action="store_true")
    parser.add_argument("--ceiling", action="store_true")
    args = parser.parse_args()
    cfg = load_config(args.config)
    dataset = resolve_dataset(cfg.data, cfg.cache_dir)
    if args.ceiling:
        ceiling(dataset)
        return
    backbone = resolve_backbone(cfg, dataset, False, needs_part_head=reads_predicted_masks(cfg))
    size = args.image_size or cfg.backbone.image_size
    split = SplitTransform.of(backbone.transform)
    pil = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    stages = [backbone.stage_index(int(s)) for s in args.strides.split(",")]
    net = copy.deepcopy(backbone.model)

    def maps(pixels: torch.Tensor) -> list[torch.Tensor]:
        """(B, H, W, 3) uint8 -> the stage maps, finest first, then the last map."""
        last, inter = net.forward_intermediates(split.normalise(pixels), indices=stages)
        return [*inter, last]

    def load(name: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loader = DataLoader(
            _Images(
                dataset, dataset.split_indices(name), lambda im: pil(im).permute(1, 2, 0), None
            ),
            batch_size=128,
            collate_fn=_collate,
        )
        pixels, labels = [], []
        for x, y in loader:
            pixels.append(x)
            labels += y
        return torch.cat(pixels), labels

    start = time.perf_counter()
    train_x, train_labels = load("train")
    test_x, test_labels = load("test")
    targets = torch.stack(
        [F.interpolate(t[None, None].float(), size=(size, size))[0, 0].long() for t in train_labels]
    )
    net.eval()
    if not args.finetune:  # frozen: the maps once (float16 to halve the memory)
        with torch.inference_mode():
            train_maps = [torch.cat(m) for m in zip(*(maps(b) for b in train_x.split(128)))]
            test_maps = [torch.cat(m) for m in zip(*(maps(b) for b in test_x.split(128)))]
        train_maps = [m.half() for m in train_maps]
        test_maps = [m.half() for m in test_maps]
        channels = [m.shape[1] for m in train_maps]
    else:
        with torch.inference_mode():
            channels = [m.shape[1] for m in maps(train_x[:2])]
    print(f"inputs ready in {time.perf_counter() - start:.0f} s; stage channels {channels}")

    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # seeded module init; the global state is left as it was
        torch.manual_seed(0)
        decoder = PartSegHead(channels[-1], channels[:-1], stages, args.width)
    groups = [{"params": list(decoder.parameters()), "lr": 3e-3}]
    if args.finetune:
        groups.append({"params": list(net.parameters()), "lr": 1e-3})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    batch_size, n = 64, len(targets)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=args.epochs * ((n + batch_size - 1) // batch_size),
    )
    weight = None
    if args.class_weights:
        counts = torch.bincount(targets.flatten(), minlength=N_SLOTS + 1).float().clamp_min(1)
        weight = (counts.sum() / counts).sqrt()
        weight = weight / weight.mean()

    def logits_of(x_or_maps, index=None) -> torch.Tensor:
        if args.finetune:
            source = maps(x_or_maps if index is None else x_or_maps[index])
        else:
            source = [m[index].float() for m in x_or_maps] if index is not None else x_or_maps
        return decoder(source[-1], *source[:-1])

    def evaluate(epochs_done: int) -> None:
        decoder.eval()
        net.eval()
        with torch.inference_mode():
            if args.finetune:
                test = torch.cat([logits_of(b) for b in test_x.split(256)])
                train = logits_of(train_x[:EVAL_TRAIN_IMAGES])
            else:
                chunks = torch.arange(len(test_labels)).split(256)
                test = torch.cat([logits_of(test_maps, c) for c in chunks])
                train = logits_of(train_maps, torch.arange(EVAL_TRAIN_IMAGES))
        train_miou, _ = _miou(train, train_labels[:EVAL_TRAIN_IMAGES])
        test_miou, iou = _miou(test, test_labels)
        print(
            f"epoch {epochs_done}: train mIoU {100 * train_miou:.1f}, test mIoU {100 * test_miou:.1f} "
            f"(per slot {_per_slot(iou)}), {time.perf_counter() - start:.0f} s",
            flush=True,
        )

    for epoch in range(args.epochs):
        decoder.train()
        net.train(args.finetune)
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            y = targets[batch]
            if args.finetune:  # horizontal flips: pixels are (B, H, W, 3), labels (B, H, W)
                x = train_x[batch]
                flip = torch.rand(len(batch), generator=generator) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(2), x)
                y = torch.where(flip[:, None, None], y.flip(2), y)
                if args.colour_aug:
                    x = _recolour(x, generator)
                logits = logits_of(x)
            else:
                logits = logits_of(train_maps, batch)
            logits = F.interpolate(logits, size=(size, size), mode="bilinear")
            loss = F.cross_entropy(logits, y, weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            evaluate(epoch + 1)


if __name__ == "__main__":
    main()
