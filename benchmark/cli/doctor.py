"""`doctor`: environment, devices, cache, and a tiny timed run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="environment, devices, cache, and a tiny timed run")
    doctor.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    doctor.add_argument("--cache-dir", help="default: $PARTBENCH_CACHE or ~/.cache/partbench")
    doctor.add_argument(
        "--model", default="resnet10t", help="timm model of the timed run (default: resnet10t)"
    )
    doctor.add_argument(
        "--image-size", type=int, default=64, help="input size of the timed run (default: 64)"
    )
    doctor.add_argument(
        "--n-images", type=int, default=128, help="images the timed run extracts (default: 128)"
    )
    doctor.add_argument(
        "--num-workers", type=int, default=0, help="data-loading workers (default: 0)"
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.config.run import check_device
    from benchmark.run.doctor import doctor

    check_device(args.device, "--device")  # one line for `gpu0`, or cuda without a GPU
    return doctor(
        args.device, args.cache_dir, args.model, args.image_size, args.n_images, args.num_workers
    )
