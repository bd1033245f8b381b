"""redis-connection-exporter: Prometheus metrics about the client connections of Redis servers."""

__version__ = "0.1.0"
