"""What determinism CPU training has: the same config trained in fresh processes under several
thread counts, with and without torch.use_deterministic_algorithms, compared by weight hash.

    python bench/bench_determinism.py [--epochs 1] [--image-size 32]

Each trial trains `backbone.weights: train` on a small twin into its own empty cache and prints
the sha256 of the selected weights. Trials with equal hashes are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TRIAL = r"""
import json, sys, torch
from benchmark.config.run import config_from_dict
from benchmark.data.source import resolve_dataset
from benchmark.training.weights import resolve_backbone
raw, threads, deterministic = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
torch.set_num_threads(threads)
torch.use_deterministic_algorithms(deterministic)
cfg = config_from_dict(raw)
backbone = resolve_backbone(cfg, resolve_dataset(cfg.data, cfg.cache_dir), progress=False)
print(json.dumps({"sha256": backbone.provenance["sha256"]}))
"""


def trial(raw: dict, threads: int, deterministic: bool, cache: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    raw = {**raw, "cache_dir": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", TRIAL, json.dumps(raw), str(threads), "1" if deterministic else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["sha256"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--model", default="resnet10t")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        twin = {"images_per_class": 6, "image_size": 48, "seed": 0}
        raw = {
            "data": {"source": "synthetic", "root": f"{tmp}/twin", "synthetic": twin},
            "backbone": {"name": args.model, "weights": "train", "image_size": args.image_size},
            "train": {
                "epochs": args.epochs,
                "batch_size": 32,
                "val_episodes": 8,
                "val_k_shot": 1,
                "val_n_query": 2,
            },
        }
        trials = [(1, False), (1, False), (2, False), (1, True), (2, True)]
        hashes = []
        for n, (threads, deterministic) in enumerate(trials):
            digest = trial(raw, threads, deterministic, Path(tmp) / f"cache{n}")
            hashes.append(digest)
            print(
                f"threads={threads} deterministic_algorithms={deterministic!s:5}  "
                f"weights sha256 {digest[:16]}",
                flush=True,
            )
    same = hashes[0] == hashes[1]
    print(f"\nsame threads, two processes: {'bit-identical' if same else 'DIFFERENT'}")
    print(f"1 vs 2 threads: {'bit-identical' if hashes[0] == hashes[2] else 'different'}")
    print(
        f"deterministic algorithms, 1 vs 2 threads: "
        f"{'bit-identical' if hashes[3] == hashes[4] else 'different'}"
    )
    print(
        f"deterministic algorithms change the 1-thread weights: "
        f"{'no' if hashes[0] == hashes[3] else 'yes'}"
    )


if __name__ == "__main__":
    main()
