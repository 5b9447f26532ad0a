"""`download`: fetch PartImageNet_OOD.zip from the Hugging Face hub."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    download = sub.add_parser(
        "download", help="fetch PartImageNet_OOD.zip from the Hugging Face hub"
    )
    download.add_argument("--out", required=True, help="folder to download the archive into")


def main(args: argparse.Namespace) -> int:
    from benchmark.data.release.download import download_release

    path = download_release(args.out)
    print(f"downloaded {path}\nnext: python -m benchmark prepare {path} --out DIR")
    return 0
