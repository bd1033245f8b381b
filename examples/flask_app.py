"""The seed's web application, instrumented: a Flask app with one module-level pool.

    REDIS_URL=redis://localhost:6379 python3 examples/flask_app.py --port 5000
    curl localhost:5000/visit; curl localhost:5000/metrics | grep redis_pool_

Every request borrows a connection from the pool; /metrics shows the pool (in use, idle, max,
wait time) beside what the exporter sees on the server for the client name `web`.
"""

from __future__ import annotations

import argparse
import os

import redis
from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exporter.pools import instrument

pool = redis.BlockingConnectionPool.from_url(
    os.environ.get("REDIS_URL", "redis://localhost:6379"), max_connections=10, timeout=2,
    client_name="web")
instrument(pool, name="web")
cache = redis.Redis(connection_pool=pool)
app = Flask(__name__)


@app.get("/visit")
def visit() -> str:
    return f"visits: {cache.incr('example:visits')}\n"


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5000)
    app.run(host="127.0.0.1", port=parser.parse_args().port, threaded=True)
