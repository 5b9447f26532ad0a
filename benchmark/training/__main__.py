"""Train a backbone on a PartImageNet-format dataset's train split, select it on val episodes.

    python -m benchmark.training --data <root> --model resnet10t --image-size 64 --epochs 10 \\
        --batch-size 64 --lr 0.2 --out outputs/train/resnet10t-64
    torchrun --nproc_per_node=4 -m benchmark.training --data <root> ... (DDP, one GPU a process)

Prints the best checkpoint's path and its val accuracy; timings per epoch go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch.distributed as dist

from benchmark.config.training import PART_HEAD_MODES, TRAIN_METHODS, TrainConfig
from benchmark.data.errors import DatasetError
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.splits import TRAINING_SPLITS
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.loop import train_backbone


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset root (real PartImageNet OOD or twin)")
    p.add_argument("--model", default="resnet10t", help="timm model name")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--method", choices=TRAIN_METHODS, default="classification")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument(
        "--part-head", choices=["none", *(m for m in PART_HEAD_MODES if m)], default="none"
    )
    p.add_argument("--part-head-epochs", type=int, default=None)
    p.add_argument("--n-way", type=int, default=10)
    p.add_argument("--k-shot", type=int, default=5)
    p.add_argument("--n-query", type=int, default=10)
    p.add_argument("--episodes-per-epoch", type=int, default=100)
    p.add_argument("--val-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (best.pt, last.pt)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--no-resume", action="store_true")
    args = p.parse_args(argv)

    try:
        dataset = load_partimagenet(args.data, needed=TRAINING_SPLITS)
    except DatasetError as exc:  # a wrong --data folder: one line, no traceback, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    config = TrainConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        part_head=False if args.part_head == "none" else args.part_head,
        part_head_epochs=args.part_head_epochs,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        n_way=args.n_way,
        k_shot=args.k_shot,
        n_query=args.n_query,
        episodes_per_epoch=args.episodes_per_epoch,
        val_episodes=args.val_episodes,
        num_workers=args.workers,
    )
    start = time.perf_counter()
    best = train_backbone(
        dataset,
        config,
        model_name=args.model,
        image_size=args.image_size,
        seed=args.seed,
        out_dir=args.out,
        device=args.device,
        resume=not args.no_resume,
    )
    if not dist.is_initialized() or dist.get_rank() == 0:
        last = load_checkpoint(best.parent / "last.pt")
        meta = load_checkpoint(best)["meta"]
        print(
            json.dumps(
                {
                    "best": str(best),
                    "val_accuracy": meta["val_accuracy"],
                    "epoch": meta["epoch"],
                    "seconds": round(time.perf_counter() - start, 1),
                    "history": last["history"],
                },
                indent=1,
            )
        )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
