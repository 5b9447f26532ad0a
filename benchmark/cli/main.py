"""The command line's parser and its one error policy: user errors are one line and exit 2, bugs
keep their traceback and exit 1.

Each command is a module of benchmark.cli with `register(subparsers)` (its arguments) and
`main(args) -> int`. Heavy libraries (torch, timm) are imported inside the commands that need
them, so `--help`, `list`, `validate` and `leaderboard` start fast.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from types import ModuleType

from benchmark.cli import (
    cache,
    doctor,
    download,
    episodes,
    leaderboard,
    list_learners,
    prepare,
    repair,
    report,
    run,
    score,
    synth,
    validate,
)
from episodes.errors import PartbenchError

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

# command name -> its module, in the order `--help` lists them
COMMAND_MODULES: dict[str, ModuleType] = {
    "run": run,
    "synth": synth,
    "download": download,
    "prepare": prepare,
    "episodes": episodes,
    "score": score,
    "list": list_learners,
    "validate": validate,
    "report": report,
    "cache": cache,
    "doctor": doctor,
    "leaderboard": leaderboard,
    "repair": repair,
}
COMMANDS = {name: module.main for name, module in COMMAND_MODULES.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="partbench: few-shot, part-aware benchmarks on PartImageNet.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES.values():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PartbenchError as exc:
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
        print(
            "partbench hit an internal error (a bug, not a problem with your input): please "
            "report it with the command line and the traceback above",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
