"""Stage 6, exposition: the one table of metric families, rendering, per-target snapshots,
the /metrics and /scrape bodies and the HTTP server. Never reaches a connection or a poller
(a test checks)."""
