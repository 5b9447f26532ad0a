"""`episodes`: write a fixed episode file (and optionally its image names) from a config."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    episodes = sub.add_parser("episodes", help="write a fixed episode file from a config")
    episodes.add_argument(
        "--config", required=True, help="a YAML file, or the name of a shipped config"
    )
    episodes.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. episodes.k_shot=5 (repeatable)",
    )
    episodes.add_argument("--out", required=True, help="episode file to write (JSON)")
    episodes.add_argument(
        "--names",
        action="store_true",
        help="also write OUT's .names.json: each episode's class synsets and "
        "image keys <split>/<file_name> (in the release the file lies at "
        "<split>/<synset>/<file_name>), for a method's own loader",
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.config.run import load_config
    from benchmark.data.source import resolve_dataset
    from benchmark.run.components import build_sampler
    from episodes import save_episodes

    cfg = load_config(args.config, args.overrides)
    check_output_file(Path(args.out))
    split = cfg.episodes.split
    dataset = resolve_dataset(
        cfg.data, cfg.cache_dir, needed={split: f"draws its episodes from the {split} split"}
    )
    sampler = build_sampler(cfg, dataset)
    episodes = [sampler[i] for i in range(cfg.episodes.n_episodes)]
    digest = save_episodes(
        Path(args.out), episodes, settings=sampler.settings, dataset_fingerprint=dataset.fingerprint
    )
    print(f"{len(episodes)} episodes written to {args.out} (episodes hash {digest.episodes_hash})")
    if args.names:
        from benchmark.evaluation.own_loop import names_path, write_episode_names
        from results.run_result import DATASET_NAMES

        name = DATASET_NAMES[cfg.data.source]
        path = write_episode_names(
            names_path(args.out),
            dataset,
            episodes,
            episodes_hash=digest.episodes_hash,
            dataset_name=name,
        )
        print(f"image names written to {path}")
    return 0


def check_output_file(out: Path) -> None:
    """`--out FILE` must name a file in an existing folder (checked before any work)."""
    from benchmark.config.errors import ConfigError

    if out.is_dir():
        raise ConfigError(
            f"--out {out}: is a folder; name the episode file to write, e.g. "
            f"{out / 'episodes.json'}"
        )
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist; create it first")
