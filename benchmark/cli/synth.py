"""`synth`: write the synthetic twin in PartImageNet's on-disk format."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser(
        "synth", help="write the synthetic twin in PartImageNet's on-disk format"
    )
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument(
        "--images-per-class", type=int, default=20, help="images per class (default: 20)"
    )
    synth.add_argument(
        "--image-size", type=int, default=128, help="longer image side in pixels (default: 128)"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="the twin's seed: same seed, same bytes (default: 0)"
    )
    synth.add_argument(
        "--full",
        action="store_true",
        help="the real release's per-split image counts (16540/2957/4598)",
    )
    synth.add_argument(
        "--workers", type=int, default=1, help="processes writing images (default: 1)"
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.config.errors import ConfigError
    from benchmark.data.twin.generate import generate_twin

    for flag, value, low in (
        ("--images-per-class", args.images_per_class, 1),
        ("--image-size", args.image_size, 32),
        ("--workers", args.workers, 1),
    ):
        if value < low:
            raise ConfigError(f"synth {flag}: must be at least {low}, got {value}")
    out = generate_twin(
        Path(args.out),
        images_per_class=args.images_per_class,
        image_size=args.image_size,
        seed=args.seed,
        full=args.full,
        workers=args.workers,
    )
    print(f"synthetic twin written to {out}")
    return 0
