"""`python -m bench core [--runs N]`."""

from __future__ import annotations

import argparse

from bench import (
    core,
    lifecycle,
    load,
    metrics,
    network,
    processes,
    runtimes,
    ssh,
    templates,
    volumes,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="suite", required=True)
    core_parser = sub.add_parser("core", help="create-to-first-command, exec round trip, file I/O")
    core_parser.add_argument("--runs", type=int, default=20)
    core_parser.add_argument("--file-mib", type=int, default=100)
    proc_parser = sub.add_parser("processes", help="streaming, first byte, background processes")
    proc_parser.add_argument("--runs", type=int, default=20)
    proc_parser.add_argument("--stream-mib", type=int, default=200)
    proc_parser.add_argument("--background", type=int, default=100)
    metrics_parser = sub.add_parser("metrics", help="cost of sampling idle sandboxes")
    metrics_parser.add_argument("--sandboxes", type=int, default=200)
    metrics_parser.add_argument("--seconds", type=float, default=20)
    ssh_parser = sub.add_parser("ssh", help="exec round trip and scp through the SSH gateway")
    ssh_parser.add_argument("--runs", type=int, default=20)
    ssh_parser.add_argument("--file-mib", type=int, default=100)
    network_parser = sub.add_parser("network", help="preview proxy beside direct HTTP")
    network_parser.add_argument("--runs", type=int, default=500)
    network_parser.add_argument("--seconds", type=float, default=5)
    network_parser.add_argument("--connections", type=int, default=8)
    lifecycle_parser = sub.add_parser(
        "lifecycle", help="pause, resume, memory snapshots and branches beside bare CRIU"
    )
    lifecycle_parser.add_argument("--runs", type=int, default=5)
    runtimes_parser = sub.add_parser("runtimes", help="oci (runc) and runsc (gVisor) side by side")
    runtimes_parser.add_argument("--runs", type=int, default=10)
    runtimes_parser.add_argument("--file-mib", type=int, default=50)
    templates_parser = sub.add_parser(
        "templates", help="Sandlotfile builds, cached rebuilds, create from a built template"
    )
    templates_parser.add_argument("--runs", type=int, default=5)
    volumes_parser = sub.add_parser(
        "volumes", help="create with volumes, I/O in a volume, uploads without a sandbox"
    )
    volumes_parser.add_argument("--runs", type=int, default=20)
    volumes_parser.add_argument("--file-mib", type=int, default=200)
    load_parser = sub.add_parser(
        "load", help="many sandboxes, execs across them, and a soak of mixed operations"
    )
    load_parser.add_argument("--idle", type=int, default=200)
    load_parser.add_argument("--execs", type=int, default=1000)
    load_parser.add_argument("--soak-minutes", type=float, default=10)
    load_parser.add_argument("--soak-workers", type=int, default=4)
    args = parser.parse_args()
    if args.suite == "core":
        core.run(runs=args.runs, file_mib=args.file_mib)
    elif args.suite == "metrics":
        metrics.run(sandboxes=args.sandboxes, seconds=args.seconds)
    elif args.suite == "processes":
        processes.run(runs=args.runs, stream_mib=args.stream_mib, background=args.background)
    elif args.suite == "lifecycle":
        lifecycle.run(runs=args.runs)
    elif args.suite == "ssh":
        ssh.run(runs=args.runs, file_mib=args.file_mib)
    elif args.suite == "volumes":
        volumes.run(runs=args.runs, file_mib=args.file_mib)
    elif args.suite == "runtimes":
        runtimes.run(runs=args.runs, file_mib=args.file_mib)
    elif args.suite == "templates":
        templates.run(runs=args.runs)
    elif args.suite == "load":
        load.run(args.idle, args.execs, args.soak_minutes, args.soak_workers)
    elif args.suite == "network":
        network.run(runs=args.runs, seconds=args.seconds, connections=args.connections)


main()
