"""Stage 4, the pure pipeline: INFO and CLIENT LIST parsing, grouping, per-group measures and
the digest of one poll. No sockets, threads, clocks or redis-py here (a test checks): every
function takes bytes and state and returns values."""
