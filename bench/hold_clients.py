"""Load generator: hold N idle, named client connections to a Redis, for a bounded time.

    python -m bench.hold_clients --port 6390 --clients 10000 --seconds 300

Prints READY once every client is connected and named; exits after --seconds or on SIGTERM.
Names come from a small realistic set (web-1..20, worker-1..5, ...); ~20% SELECT another db.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import struct
import sys

NAMES = ([f"web-{i}" for i in range(1, 21)] + [f"worker-{i}" for i in range(1, 6)]
         + ["scheduler", "celery-beat", "admin-console", "metrics-sidecar", "session-cache"])


def _command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        out.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
    return b"".join(out)


async def open_named(port: int, name: str, db: int = 0) -> asyncio.StreamWriter:
    """One idle client named `name` (in `db`), closed with RST (no TIME_WAIT pile-up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = _command("CLIENT", "SETNAME", name)
    expected = 1
    if db:
        payload += _command("SELECT", str(db))
        expected = 2
    writer.write(payload)
    for _ in range(expected):
        line = await reader.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"unexpected reply {line!r}")
    sock = writer.get_extra_info("socket")
    # Close with RST so that no TIME_WAIT pile-up carries over to the next run.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return writer


async def main(port: int, clients: int, seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    writers = []
    for start in range(0, clients, 500):
        batch = [open_named(port, rng.choice(NAMES), rng.choice((1, 2, 3, 15))
                       if rng.random() < 0.2 else 0)
                 for _ in range(start, min(start + 500, clients))]
        writers += await asyncio.gather(*batch)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    for writer in writers:
        writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.clients, options.seconds, options.seed))
    sys.exit(0)
