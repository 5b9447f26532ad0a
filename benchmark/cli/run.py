"""`run`: evaluate learners on episodes and write a result file (or resume a stopped run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="evaluate learners on episodes and write a result file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", help="a YAML file, or the name of a shipped config")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. episodes.n_way=10 (repeatable); "
        "`python -m benchmark list` shows each key's choices",
    )
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run in RUN_DIR, skipping the episodes it finished",
    )
    run.add_argument("--out", metavar="RUN_DIR", help="write to this folder instead of a new one")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="print every table at the end (default: accuracy and paired; all are saved)",
    )
    run.add_argument(
        "--seeds",
        metavar="S,S,...",
        help="train one backbone per seed (e.g. 0,1,2), evaluate each on the same "
        "episodes and report the spread between seeds (= backbone.seeds)",
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.config.errors import ConfigError
    from benchmark.config.run import load_config
    from benchmark.run.folder import load_run_config
    from benchmark.run.orchestrator import run as run_one_seed
    from benchmark.run.training_seeds import run_seeds

    overrides = list(args.overrides)
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ConfigError(
                f"--seeds {args.seeds!r}: give integers separated by commas, e.g. --seeds 0,1,2"
            ) from None
        overrides.append(f"backbone.seeds={seeds}")
    if args.resume:
        if args.config or args.out:
            raise ConfigError("--resume takes the run folder's own config; drop --config/--out")
        cfg = load_run_config(Path(args.resume), overrides)
        run_dir, resume = Path(args.resume), True
    else:
        if not args.config:
            raise ConfigError("run needs --config FILE_OR_NAME (or --resume RUN_DIR)")
        cfg = load_config(args.config, overrides)
        run_dir, resume = (Path(args.out) if args.out else None), False
    (run_seeds if cfg.backbone.seeds else run_one_seed)(
        cfg, run_dir=run_dir, resume=resume, progress=not args.quiet, verbose=args.verbose
    )
    return 0
