"""`prepare`: unpack and verify the real release into the canonical layout."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    prepare = sub.add_parser(
        "prepare",
        help="unpack and verify the real release into the canonical layout",
        description="Unpack PartImageNet_OOD.zip (or a folder of its inner zips, or an unpacked "
        "copy in any layout) into OUT/<split>.json and OUT/<split>/<synset>/, check "
        "it against the published release and write OUT/partbench-manifest.json.",
    )
    prepare.add_argument(
        "source", help="PartImageNet_OOD.zip, a folder of its inner zips, or a copy"
    )
    prepare.add_argument("--out", required=True, help="folder to write (new, or an earlier output)")
    prepare.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept a copy that differs from the release (e.g. train+val only)",
    )
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    prepare.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads decoding images for the check (default: up to 8)",
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.data.release.prepare import prepare_release

    report = prepare_release(
        args.source,
        args.out,
        allow_partial=args.allow_partial,
        workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print("\n".join(report.lines()))
    print(f"next: set data.root to {report.out} (data.source: partimagenet)")
    return 0
