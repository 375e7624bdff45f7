"""``python -m tests.peers.auth0 [--host H] [--port P] [--config FILE] [--domain D]``

Starts the emulator and prints ONE line, its base URL (``http://127.0.0.1:PORT``), once it
accepts connections; then serves until SIGTERM or SIGINT. ``--port 0`` picks a free port.
``--config`` is a JSON file of ``EmulatorConfig`` keys; ``--domain`` overrides its ``domain``
(default: ``host:port``, so the official SDK's ``GetToken(domain, protocol="http")`` builds the
right assertion audience). The clock is the wall clock (moved with ``POST /__emulator/clock``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from tests.peers.auth0.config import EmulatorConfig
from tests.peers.auth0.server import Auth0Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.auth0",
                                     description="Run the Auth0 emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", type=Path, help="JSON file of EmulatorConfig keys")
    parser.add_argument("--domain", help="the tenant domain (default: host:port)")
    args = parser.parse_args(argv)
    data = json.loads(args.config.read_text()) if args.config else {}
    if args.domain:
        data["domain"] = args.domain
    try:
        config = EmulatorConfig.from_dict(data)
    except ValueError as error:
        print(f"auth0 emulator: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Auth0Emulator(config, host=args.host, port=args.port) as emu:
        print(emu.base_url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
