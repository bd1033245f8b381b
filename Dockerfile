# syntax=docker/dockerfile:1
#
# redis-connection-exporter container image.
#
#   docker build -t redis-connection-exporter:0.1.0 .
#   docker run -d -p 9379:9379 \
#     -v "$PWD/config.yaml:/etc/redis-connection-exporter/config.yaml:ro" \
#     -v "$PWD/secrets:/run/secrets/redis-connection-exporter:ro" \
#     redis-connection-exporter:0.1.0
#
# The configuration is read from /etc/redis-connection-exporter/config.yaml (mount your own over
# the copy of config.example.yaml baked in here); password files go in a read-only mount such as
# /run/secrets/redis-connection-exporter/<name>, named by `password_file:` in the config. No
# password is ever put in the image, its environment or its command line.
# Extra flags go after the image name and replace CMD, so repeat --config.file:
#   docker run ... redis-connection-exporter:0.1.0 --config.file=/etc/redis-connection-exporter/config.yaml --log.format=json

# ---- builder: compiles the wheel, with the C CLIENT LIST scanner, and the dependencies' wheels
FROM python:3.11-slim-bookworm AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY exporter/ exporter/

# setup.py marks the extension optional (a plain `pip install .` works without a compiler), so
# check that the wheel really carries the compiled scanner: the image must not silently fall
# back to the ~10x slower pure-Python one.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && python -c "import glob, sys, zipfile; \
wheel = glob.glob('/wheels/redis_connection_exporter-*.whl')[0]; \
names = zipfile.ZipFile(wheel).namelist(); \
sys.exit(0 if any(n.startswith('exporter/pipeline/_clientlist_scan') and n.endswith('.so') for n in names) \
else 'the wheel has no compiled CLIENT LIST scanner')"

# ---- final: the slim runtime with only the wheels installed (no compiler, no sources)
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="redis-connection-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Redis client connections: saturation, capped per-group counts, idle/age histograms that keep working at maxclients" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The wheels are bind-mounted from the builder, not copied: no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels redis-connection-exporter \
    && python -c "import exporter.pipeline._clientlist_scan"

COPY config.example.yaml /etc/redis-connection-exporter/config.yaml

# Numeric, so that Kubernetes' runAsNonRoot can verify it; no passwd entry is needed.
USER 65532:65532

EXPOSE 9379

# For plain Docker (Kubernetes ignores HEALTHCHECK and uses its probes). slim has no curl.
# It assumes the default --web.listen-address and no --web.config.file: with TLS or basic auth
# on the endpoint, override it (docker run --health-cmd ...) or disable it (--no-healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9379/-/healthy', timeout=4)"]

# Exec form: the exporter is PID 1 and gets SIGTERM (stops within 3 s) and SIGHUP (reload).
ENTRYPOINT ["redis-connection-exporter"]
CMD ["--config.file=/etc/redis-connection-exporter/config.yaml"]
