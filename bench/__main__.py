"""`python -m bench core [--runs N]`."""

from __future__ import annotations

import argparse

from bench import core


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="suite", required=True)
    core_parser = sub.add_parser("core", help="create-to-first-command, exec round trip, file I/O")
    core_parser.add_argument("--runs", type=int, default=20)
    core_parser.add_argument("--file-mib", type=int, default=100)
    args = parser.parse_args()
    if args.suite == "core":
        core.run(runs=args.runs, file_mib=args.file_mib)


main()
