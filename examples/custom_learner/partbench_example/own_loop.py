"""A method's own evaluation loop over a partbench episode file, then scored by partbench.

    python -m benchmark episodes --config 5way1shot --out E.json --names
    python -m partbench_example.own_loop E.json --out scored/   [--root DATASET_FOLDER]

The "method" here is deliberately simple and needs no torch: each image becomes a colour
histogram, and a query takes the way of the nearest support class mean. What matters is the
loop: read the images the names file lists (with one's own loader), predict the way of every
query in the episode's query order, write {"episode": i, "predictions": [...]} lines, score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from episodes import class_super_categories, load_episodes
from results import predictions_source, read_predictions, score


def histogram(path: Path, bins: int = 4) -> np.ndarray:
    """(bins^3,) normalised RGB colour histogram of an image."""
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3) // (256 // bins)
    codes = (pixels[:, 0] * bins + pixels[:, 1]) * bins + pixels[:, 2]
    counts = np.bincount(codes, minlength=bins**3).astype(np.float64)
    return counts / counts.sum()


def own_loader(root: Path) -> dict[str, Path]:
    """ "<split>/<file_name>" -> file, found by walking the dataset folder (one's own loader)."""
    files = {}
    for path in root.rglob("*"):
        if path.suffix.lower() in (".jpeg", ".jpg", ".png"):
            split = next(
                (p for p in path.relative_to(root).parts if p in ("train", "val", "test")), None
            )
            if split is not None:
                files[f"{split}/{path.name}"] = path
    return files


def predict(names: dict, files: dict[str, Path]) -> list[dict]:
    rows = []
    for episode in names["episodes"]:
        means = np.stack(
            [np.mean([histogram(files[n]) for n in way], axis=0) for way in episode["support"]]
        )  # (N, F)
        queries = [n for way in episode["query"] for n in way]  # the episode's query order
        distances = [np.linalg.norm(means - histogram(files[n]), axis=1) for n in queries]
        rows.append(
            {"episode": episode["episode"], "predictions": [int(np.argmin(d)) for d in distances]}
        )
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("episodes", type=Path, help="episode file written with --names")
    parser.add_argument(
        "--root",
        type=Path,
        help="the dataset folder (default: the one the names file was written from)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the scored result")
    args = parser.parse_args(argv)
    names = json.loads(args.episodes.with_name(f"{args.episodes.stem}.names.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    predictions = args.out / "predictions.jsonl"
    rows = predict(names, own_loader(args.root or Path(names["dataset"]["root"])))
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frozen = load_episodes(args.episodes)
    path = score(
        read_predictions(predictions),
        frozen.episodes,
        name="colour_histogram",
        out_dir=args.out,
        episodes_hash=frozen.episodes_hash,
        settings=frozen.settings,
        dataset={k: names["dataset"][k] for k in ("name", "fingerprint")},
        super_categories=class_super_categories(),
        backbone="none (colour histograms)",
        saw_test_classes=False,
        source=predictions_source(predictions),
    )
    print(f"result file: {path}")
    return path


if __name__ == "__main__":
    main()
