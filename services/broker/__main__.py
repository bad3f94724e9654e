"""Run the embedded broker: ``python -m services.broker [--host H] [--port P]``.

Stops cleanly on SIGTERM or Ctrl-C. Prints one line, ``listening on H:P``,
once it accepts connections (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from services.broker.server import EmbeddedBroker


async def _run(host: str, port: int) -> None:
    broker = EmbeddedBroker(host=host, port=port)
    await broker.start()
    sys.stdout.write(f"listening on {broker.host}:{broker.port}\n")
    sys.stdout.flush()
    serving = asyncio.ensure_future(broker.serve_forever())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_run(args.host, args.port))


if __name__ == "__main__":
    main()
