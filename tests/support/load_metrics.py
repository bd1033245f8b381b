"""Load generator for /metrics, run as its own process: N keep-alive clients for S seconds.

    python -m tests.support.load_metrics --url http://127.0.0.1:9379/metrics \
        --clients 200 --seconds 60

Each client is a thread with its own HTTP/1.1 connection asking for gzip, as Prometheus does,
issuing the next request as soon as the last answer is read. Prints one JSON line: requests,
errors (non-200, resets, timeouts), latency percentiles in seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def run_client(url: str, deadline: float, latencies: list[float], errors: list[str]) -> None:
    parts = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1",
                                                        parts.port or 80, timeout=10)
            connection.request("GET", parts.path, headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                errors.append(f"status {response.status}")
        except (OSError, http.client.HTTPException) as error:
            errors.append(type(error).__name__)
            if connection is not None:
                connection.close()
            connection = None
            continue
        latencies.append(time.monotonic() - started)
    if connection is not None:
        connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args()
    deadline = time.monotonic() + options.seconds
    latencies: list[float] = []  # list.append is atomic under the GIL
    errors: list[str] = []
    threads = [threading.Thread(target=run_client,
                                args=(options.url, deadline, latencies, errors), daemon=True)
               for _ in range(options.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(options.seconds + 30)
    print(json.dumps({"requests": len(latencies), "errors": len(errors),
                      "error_kinds": sorted(set(errors))[:10],
                      "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                      "max": max(latencies, default=0.0)}))


if __name__ == "__main__":
    main()
