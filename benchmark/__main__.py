"""The partbench command line: `python -m benchmark COMMAND ...`.

Heavy libraries (torch, timm) are imported inside the commands that need them, so `--help`,
`list`, `validate` and `leaderboard` start fast.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

EXAMPLES = """\
examples:
  python -m benchmark run --config configs/5way1shot.yaml
  python -m benchmark run --config 5way1shot.yaml --set episodes.n_episodes=2000 --set episodes.k_shot=5
  python -m benchmark run --resume outputs/5way1shot-20261125-130000
  python -m benchmark synth --out /data/partbench-twin --images-per-class 40
  python -m benchmark download --out ~/downloads
  python -m benchmark prepare ~/downloads/PartImageNet_OOD.zip --out /data/PartImageNet_OOD
  python -m benchmark episodes --config 5way1shot.yaml --out test-5w1s.episodes.json
  python -m benchmark episodes --config 5way1shot.yaml --out E.json --names
  python -m benchmark score predictions.jsonl --episodes E.json --name mine --out scored/
  python -m benchmark list
  python -m benchmark report outputs/5way1shot-* outputs/5way5shot-* --out report/
  python -m benchmark validate outputs/*/result.json
  python -m benchmark leaderboard results-dir/
  python -m benchmark cache --clear decoded
  python -m benchmark doctor --device cuda
  python -m benchmark repair outputs/5way1shot-20261125-130000
"""


def build_parser() -> argparse.ArgumentParser:
    from benchmark.cache import CACHE_KINDS  # standard library only: --help stays fast

    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="partbench: few-shot, part-aware benchmarks on PartImageNet.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="evaluate learners on episodes and write a result file",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", help="a YAML file, or the name of a shipped config")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. episodes.n_way=10 (repeatable); "
                          "`python -m benchmark list` shows each key's choices")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue a stopped run in RUN_DIR, skipping the episodes it finished")
    run.add_argument("--out", metavar="RUN_DIR", help="write to this folder instead of a new one")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--seeds", metavar="S,S,...",
                     help="train one backbone per seed (e.g. 0,1,2), evaluate each on the same "
                          "episodes and report the spread between seeds (= backbone.seeds)")

    synth = sub.add_parser("synth", help="write the synthetic twin in PartImageNet's on-disk format")
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument("--images-per-class", type=int, default=20)
    synth.add_argument("--image-size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--full", action="store_true",
                       help="the real release's per-split image counts (16540/2957/4598)")
    synth.add_argument("--workers", type=int, default=1)

    download = sub.add_parser("download", help="fetch PartImageNet_OOD.zip from the Hugging Face hub")
    download.add_argument("--out", required=True, help="folder to download the archive into")

    prepare = sub.add_parser(
        "prepare", help="unpack and verify the real release into the canonical layout",
        description="Unpack PartImageNet_OOD.zip (or a folder of its inner zips, or an unpacked "
                    "copy in any layout) into OUT/<split>.json and OUT/<split>/<synset>/, check "
                    "it against the published release and write OUT/partbench-manifest.json.")
    prepare.add_argument("source", help="PartImageNet_OOD.zip, a folder of its inner zips, or a copy")
    prepare.add_argument("--out", required=True, help="folder to write (new, or an earlier output)")
    prepare.add_argument("--allow-partial", action="store_true",
                         help="accept a copy that differs from the release (e.g. train+val only)")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    prepare.add_argument("--workers", type=int, default=None,
                         help="threads decoding images for the check (default: up to 8)")

    episodes = sub.add_parser("episodes", help="write a fixed episode file from a config")
    episodes.add_argument("--config", required=True)
    episodes.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE")
    episodes.add_argument("--out", required=True, help="episode file to write (JSON)")
    episodes.add_argument("--names", action="store_true",
                          help="also write OUT's .names.json: each episode's class synsets and "
                               "image files (<split>/<file_name>), for a method's own loader")

    score = sub.add_parser(
        "score", help="turn a method's own predictions into records and a result file",
        description="PREDICTIONS holds one JSON line per episode of the episode file: "
                    '{"episode": i, "predictions": [predicted way of each query, in the '
                    "episode's query order]}. Writes OUT/records.jsonl and OUT/result.json.")
    score.add_argument("predictions", help="the predictions (JSONL)")
    score.add_argument("--episodes", required=True, help="the episode file the method ran")
    score.add_argument("--name", required=True, help="the method's name in the tables")
    score.add_argument("--out", required=True, help="folder for records.jsonl and result.json")
    score.add_argument("--backbone", help="the model whose features or weights the method used")
    score.add_argument("--saw-test-classes", choices=("yes", "no"),
                       help="whether those weights saw the test classes (undeclared: yes)")
    score.add_argument("--transductive", action="store_true",
                       help="the method used each episode's queries jointly")
    score.add_argument("--dataset-name", help="dataset name for the result file (default: the "
                                              "one in the episode file's .names.json)")

    sub.add_parser("list", help="list the registered learners, shipped configs and the values "
                                "each config choice takes")

    validate = sub.add_parser(
        "validate", help="check leaderboard result files",
        description="Check schema, field types and content hashes of result files; with "
                    "--records, recompute every metric from the per-episode records; with "
                    "--episodes, check the evaluated episodes' hash against an episode file.")
    validate.add_argument("files", nargs="+", help="result files or folders of them")
    validate.add_argument("--records", nargs="+", metavar="JSONL",
                          help="the run's records.jsonl, to recompute the metrics")
    validate.add_argument("--episodes", metavar="FILE",
                          help="an episode file that the results must have been evaluated on")

    report = sub.add_parser("report", help="tables and plots from the records of one or more runs")
    report.add_argument("runs", nargs="+", help="run folders or records.jsonl files")
    report.add_argument("--out", required=True, help="folder for the tables and plots")
    report.add_argument("--baseline", help="learner the others are compared with, episode by episode")
    report.add_argument("--bootstrap", action="store_true", help="bootstrap CIs (seeded)")

    cache = sub.add_parser("cache", help="list the cache's size per kind, or clear one kind")
    cache.add_argument("--clear", choices=tuple(CACHE_KINDS),
                       help="delete every entry of this kind (it is remade when next needed)")
    cache.add_argument("--cache-dir", help="default: $PARTBENCH_CACHE or ~/.cache/partbench")

    doctor = sub.add_parser("doctor", help="environment, devices, cache, and a tiny timed run")
    doctor.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    doctor.add_argument("--cache-dir", help="default: $PARTBENCH_CACHE or ~/.cache/partbench")
    doctor.add_argument("--model", default="resnet10t")
    doctor.add_argument("--image-size", type=int, default=64)
    doctor.add_argument("--n-images", type=int, default=128)
    doctor.add_argument("--num-workers", type=int, default=0)

    board = sub.add_parser("leaderboard", help="rank result files verified against their records")
    board.add_argument("dir", help="a folder of result files (searched recursively)")
    board.add_argument("--allow-mixed-episodes", action="store_true",
                       help="rank together rows evaluated on different episodes")
    board.add_argument("--out", help="folder for CSV/Markdown tables")
    board.add_argument("--records", nargs="+", metavar="JSONL",
                       help="records.jsonl files to verify the rows against (default: the "
                            "records.jsonl beside each result file)")
    board.add_argument("--allow-unverified", action="store_true",
                       help="list files without records apart, unranked, instead of refusing them")
    board.add_argument("--html", metavar="DIR",
                       help="also write a self-contained web page DIR/index.html")

    repair = sub.add_parser(
        "repair", help="move the bad or repeated lines of a run's records aside",
        description="Move every bad, edited, repeated or torn line of a records file into "
                    "<file>.rejected beside it (verbatim; nothing is deleted) and keep the rest, "
                    "so `report` and `run --resume` work again; --resume re-runs the moved "
                    "episodes.")
    repair.add_argument("run", help="a run folder or its records.jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmark.data.errors import DatasetError
    from benchmark.errors import ConfigError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DatasetError, *_loaded_user_errors()) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that is read-only, a file where a folder should be, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished episodes are kept; continue with --resume", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback, it is what a report needs
        traceback.print_exc()
        print("partbench hit an internal error (a bug, not a problem with your input): please "
              "report it with the command line and the traceback above", file=sys.stderr)
        return 1


# (module, class) of the errors that mean "your input cannot be used"; looked up only in
# modules already imported, so catching them never imports torch (an error of a module that
# was never imported cannot have been raised).
USER_ERRORS = (
    ("benchmark.config", "ConfigError"), ("benchmark.data.errors", "DatasetError"),
    ("benchmark.backbones", "BackboneError"), ("benchmark.training.checkpoint", "CheckpointError"),
    ("episodes.files", "EpisodeFileError"), ("episodes.sampler", "EpisodeSettingsError"),
    ("results.records", "RecordError"), ("episodes.storage", "StrictJSONError"),
)


def _loaded_user_errors() -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules.get(module), name, None) for module, name in USER_ERRORS)
    return tuple(error for error in found if isinstance(error, type))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.config import load_config
    from benchmark.errors import ConfigError
    from benchmark.run_folder import load_run_config
    from benchmark.runner import run
    from benchmark.seeds import run_seeds

    overrides = list(args.overrides)
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: give integers separated by commas, "
                              "e.g. --seeds 0,1,2") from None
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
    (run_seeds if cfg.backbone.seeds else run)(cfg, run_dir=run_dir, resume=resume,
                                               progress=not args.quiet)
    return 0


def check_output_file(out: Path) -> None:
    """`--out FILE` must name a file in an existing folder (checked before any work)."""
    from benchmark.config import ConfigError

    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the episode file to write, e.g. "
                          f"{out / 'episodes.json'}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist; create it first")


def cmd_synth(args: argparse.Namespace) -> int:
    from benchmark.config import ConfigError
    from benchmark.data.synth import generate_twin

    for flag, value, low in (("--images-per-class", args.images_per_class, 1),
                             ("--image-size", args.image_size, 32), ("--workers", args.workers, 1)):
        if value < low:
            raise ConfigError(f"synth {flag}: must be at least {low}, got {value}")
    out = generate_twin(Path(args.out), images_per_class=args.images_per_class,
                        image_size=args.image_size, seed=args.seed, full=args.full,
                        workers=args.workers)
    print(f"synthetic twin written to {out}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from benchmark.data.download import download_release

    path = download_release(args.out)
    print(f"downloaded {path}\nnext: python -m benchmark prepare {path} --out DIR")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from benchmark.data.prepare import prepare_release

    report = prepare_release(args.source, args.out, allow_partial=args.allow_partial,
                             workers=args.workers,
                             progress=not args.quiet and sys.stderr.isatty())
    print("\n".join(report.lines()))
    print(f"next: set data.root to {report.out} (data.source: partimagenet)")
    return 0


def cmd_episodes(args: argparse.Namespace) -> int:
    from benchmark.config import load_config
    from benchmark.data.source import resolve_dataset
    from benchmark.stages import build_sampler
    from episodes import save_episodes

    cfg = load_config(args.config, args.overrides)
    check_output_file(Path(args.out))
    split = cfg.episodes.split
    dataset = resolve_dataset(cfg.data, cfg.cache_dir,
                              needed={split: f"draws its episodes from the {split} split"})
    sampler = build_sampler(cfg, dataset)
    episodes = [sampler[i] for i in range(cfg.episodes.n_episodes)]
    digest = save_episodes(Path(args.out), episodes, settings=sampler.settings,
                           dataset_fingerprint=dataset.fingerprint)
    print(f"{len(episodes)} episodes written to {args.out} (episodes hash {digest.episodes_hash})")
    if args.names:
        from benchmark.own_loop import names_path, write_episode_names
        from results.run_result import DATASET_NAMES

        name = DATASET_NAMES[cfg.data.source]
        path = write_episode_names(names_path(args.out), dataset, episodes,
                                   episodes_hash=digest.episodes_hash, dataset_name=name)
        print(f"image names written to {path}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from benchmark.own_loop import score_files

    declared = None if args.saw_test_classes is None else args.saw_test_classes == "yes"
    path = score_files(args.predictions, args.episodes, name=args.name, out_dir=args.out,
                       backbone=args.backbone, saw_test_classes=declared,
                       transductive=args.transductive, dataset_name=args.dataset_name)
    print(f"result file: {path}  (check it with: python -m benchmark validate {path} "
          f"--records {Path(args.out) / 'records.jsonl'})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from baselines import ImageLearner, get_learner_class, learner_names
    from benchmark.config import CHOICES, shipped_configs

    print("learners:")
    for name in learner_names():
        cls = get_learner_class(name)
        flags = [f for f, on in (("parts", cls.uses_parts), ("transductive", cls.transductive),
                                 ("images", issubclass(cls, ImageLearner))) if on]
        extra = f" [{', '.join(flags)}]" if flags else ""
        print(f"  {name:<22}{cls.paper}{extra}")
    print_plugins()
    print("shipped configs:")
    for name in shipped_configs():
        print(f"  {name}")
    print("config keys with a fixed set of values:")
    for key, choices in CHOICES.items():
        print(f"  {key:<22}{' | '.join(str(c).lower() if c is False else c for c in choices)}")
    return 0


def print_plugins() -> None:
    """The `partbench.learners` entry points, where each comes from, and whether it loads."""
    from baselines import LearnerSpecError, get_learner_class, learner_names
    from baselines.plugins import ENTRY_POINT_GROUP, entry_points

    found = entry_points()
    print(f"plugin learners (entry points {ENTRY_POINT_GROUP}; also any package.module:ClassName):")
    if not found:
        print("  (none installed)")
    for name, ep in sorted(found.items()):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        if name in learner_names():
            status = "shadowed by the built-in learner of that name"
        else:
            try:
                status = get_learner_class(name).paper or "loads"
            except LearnerSpecError as exc:
                status = f"FAILS: {exc}"
        print(f"  {name:<22}{ep.value} from {dist}: {status}")


def cmd_validate(args: argparse.Namespace) -> int:
    from episodes import load_episodes
    from results.cli import validate_main

    return validate_main(args.files, records=args.records, episodes_file=args.episodes,
                         episode_file_hasher=lambda path: load_episodes(path).episodes_hash)


def cmd_report(args: argparse.Namespace) -> int:
    from results.plots import write_plots
    from results.records import read_records
    from results.tables import write_report

    paths = [Path(p) / "records.jsonl" if Path(p).is_dir() else Path(p) for p in args.runs]
    records = read_records(paths)
    method = "bootstrap" if args.bootstrap else "normal"
    write_report(records, Path(args.out), baseline=args.baseline, method=method)
    for path in write_plots(records, Path(args.out), method=method):
        print(f"plot: {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from results.cli import leaderboard_main

    return leaderboard_main(args.dir, allow_mixed=args.allow_mixed_episodes, out=args.out,
                            records=args.records, allow_unverified=args.allow_unverified,
                            html=args.html)


def cmd_cache(args: argparse.Namespace) -> int:
    from benchmark.cache import cache_root, cache_usage, clear_cache

    root = cache_root(args.cache_dir)
    if args.clear:
        freed = clear_cache(root, args.clear)
        print(f"cleared {args.clear} in {root}: {freed / 2**20:.1f} MiB freed")
        return 0
    usage = cache_usage(root)
    print(f"cache: {root}")
    for kind, size in usage.items():
        print(f"  {kind:<12} {size / 2**20:10.1f} MiB")
    print(f"  {'total':<12} {sum(usage.values()) / 2**20:10.1f} MiB")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from benchmark.doctor import doctor

    return doctor(args.device, args.cache_dir, args.model, args.image_size, args.n_images,
                  args.num_workers)


def cmd_repair(args: argparse.Namespace) -> int:
    from results.records import repair_records

    path = Path(args.run)
    path = path / "records.jsonl" if path.is_dir() else path
    report = repair_records(path)
    if not report.moved:
        print(f"{path}: nothing to repair ({report.kept} good records)")
        return 0
    for number, why in report.moved:
        print(f"moved line {number}: {why}")
    print(f"{path}: kept {report.kept} records; moved {len(report.moved)} lines to "
          f"{report.side_file} (nothing deleted); `run --resume` runs their episodes again")
    return 0


COMMANDS = {
    "run": cmd_run,
    "synth": cmd_synth,
    "download": cmd_download,
    "prepare": cmd_prepare,
    "episodes": cmd_episodes,
    "score": cmd_score,
    "list": cmd_list,
    "validate": cmd_validate,
    "report": cmd_report,
    "leaderboard": cmd_leaderboard,
    "cache": cmd_cache,
    "doctor": cmd_doctor,
    "repair": cmd_repair,
}


if __name__ == "__main__":
    sys.exit(main())
