"""A password never reaches /metrics, the landing page or the logs."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from tests.support.process import ExporterProcess
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, wait_for

SECRET = "s3cr3t-Pa55w0rd-zebra"
WRONG = "wr0ng-Pa55w0rd-yak"


def test_passwords_stay_out_of_metrics_landing_page_and_logs(
        redis_factory: Callable[..., RedisServer], tmp_path: os.PathLike[str]) -> None:
    server = redis_factory(password=SECRET)
    right_file = os.path.join(tmp_path, "right")
    with open(right_file, "w") as handle:
        handle.write(SECRET + "\n")
    config = os.path.join(tmp_path, "config.yaml")
    with open(config, "w") as handle:
        handle.write(
            "poll: {interval: 1s, client_list_interval: 1s, timeout: 1s}\n"
            "defaults: {connect_probe: {interval: 1s}}\n"
            "targets:\n"
            f"  - {{name: good, url: '{server.url}', password_file: '{right_file}'}}\n"
            f"  - {{name: bad, url: '{server.url}', password_env: WRONG_PW}}\n")
    proc = ExporterProcess.serving(config, "--log.level", "debug", env={"WRONG_PW": WRONG})
    base = proc.base
    try:
        def both_polled() -> str | None:
            text = fetch(f"{base}/metrics")
            ok = (value(text, "redis_up", target="good") == 1
                  and value(text, "redis_up", target="bad") == 0
                  and value(text, "redis_connection_exporter_connect_probe_success",
                            target="bad") == 0)
            return text if ok else None

        metrics = str(wait_for(both_polled, message="both targets polled and probed"))
        landing = fetch(f"{base}/")
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(timeout=5)
        logs = proc.finish()
    assert "kind=auth" in logs  # the failure is logged, classified...
    for secret in (SECRET, WRONG):  # ...and no password shows anywhere
        assert secret not in metrics
        assert secret not in landing
        assert secret not in logs
