"""`cache`: the cache's size per kind, or clear one kind."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from benchmark.config.cache_layout import (
        CACHE_KINDS,
    )  # standard library only: --help stays fast

    cache = sub.add_parser("cache", help="list the cache's size per kind, or clear one kind")
    cache.add_argument(
        "--clear",
        choices=tuple(CACHE_KINDS),
        help="delete every entry of this kind (it is remade when next needed)",
    )
    cache.add_argument("--cache-dir", help="default: $PARTBENCH_CACHE or ~/.cache/partbench")


def main(args: argparse.Namespace) -> int:
    from benchmark.config.cache_layout import cache_root, cache_usage, clear_cache

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
