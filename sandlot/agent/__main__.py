"""Start the agent: `python3 -m agent --socket PATH` (sandbox), `python -m sandlot.agent` (host)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent", description="Sandlot's in-sandbox agent.")
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    parser.add_argument(
        "--workdir",
        help="where relative paths and commands start (default: /root if it exists, else /)",
    )
    parser.add_argument("--syslog", help="serve a syslog socket at this path (e.g. /dev/log)")
    options = parser.parse_args(argv)
    # The agent never speaks TLS. asyncio makes ssl optional, and not loading it (and
    # libssl) saves a tenth of the start-up that every sandbox creation waits for.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    import asyncio
    import logging

    from .server import Agent

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="sandlot-agent: %(levelname)s %(message)s"
    )
    return asyncio.run(Agent(options.socket, options.workdir, options.syslog).run())


if __name__ == "__main__":
    sys.exit(main())
