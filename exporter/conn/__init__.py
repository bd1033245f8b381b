"""Stage 3, connections: the only folder that talks to Redis (the held poll connection, the
probe connection, the RESP reader, step deadlines and the error kinds)."""
