# syntax=docker/dockerfile:1
# Clarion worker image: `docker build -t clarion .` then `docker run clarion` (runs `clarion worker`).
# docker-compose.yml builds it for worker-1 and worker-2.

# --- build: install the project and its dependencies into a virtualenv -------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package build needs: the project metadata and the packages listed in
# pyproject.toml's [tool.setuptools.packages.find] (tests/test_docker_compose.py checks this),
# so a local .venv or .clarion/ never ends up in the image.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY agents ./agents
COPY tables ./tables
COPY schemas ./schemas
COPY bench ./bench

RUN python -m venv /opt/clarion \
    && /opt/clarion/bin/pip install --upgrade pip \
    && /opt/clarion/bin/pip install .

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="clarion" \
      org.opencontainers.image.description="Kafka-native notification pipeline on Faust"

ENV PATH=/opt/clarion/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLARION_DATA_DIR=/data \
    CLARION_WEB_HOST=0.0.0.0 \
    CLARION_WEB_PORT=6066

RUN groupadd --system --gid 10001 clarion \
    && useradd --system --uid 10001 --gid clarion --home-dir /home/clarion --create-home \
       --shell /usr/sbin/nologin clarion \
    && mkdir -p /data \
    && chown clarion:clarion /data

COPY --from=build /opt/clarion /opt/clarion

USER clarion
WORKDIR /home/clarion

# RocksDB tables live here; mount a volume so a restarted worker recovers from local state.
VOLUME ["/data"]
EXPOSE 6066

# Liveness via Faust web's /health; python's urllib because the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CLARION_WEB_PORT', '6066'), timeout=4)" || exit 1

ENTRYPOINT ["clarion"]
CMD ["worker"]
