# Countersign's image: `countersign worker` and `countersign api` (docker-compose.yml,
# docs/deployment.md). The build stage makes the virtual environment with uv, exactly as uv.lock says;
# the runtime stage is a slim Python with only that environment, run by an unprivileged user.
# Build: docker build -t countersign .   (BuildKit, Docker's default builder, for the cache mounts)

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11.14-slim-trixie AS build
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled now (the runtime user cannot write it next to the sources); the environment's
# Python is the image's own, at the same path in the runtime stage.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when uv.lock or pyproject.toml change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
# Then Countersign itself, as a wheel in the same environment (its one package, `countersign`;
# README.md for its metadata).
COPY README.md ./
COPY countersign ./countersign
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM python:3.11.14-slim-trixie AS runtime
# A fixed uid/gid, so volumes and an orchestrator's runAsUser can name it; it owns only /data.
RUN groupadd --system --gid 10001 countersign \
    && useradd --system --uid 10001 --gid countersign --create-home --home-dir /home/countersign \
        --shell /usr/sbin/nologin countersign \
    && mkdir /data \
    && chown countersign:countersign /data
COPY --from=build /app/.venv /app/.venv
COPY deploy/worker_healthcheck.py /app/deploy/worker_healthcheck.py
# COUNTERSIGN_DATA_DIR: only the embedded default's home; Countersign's state is in its database
# (COUNTERSIGN_DATABASE_URL). COUNTERSIGN_API_HOST: the gateway listens beyond the container's loopback.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COUNTERSIGN_DATA_DIR=/data \
    COUNTERSIGN_API_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Docker's SIGTERM stops both gracefully: the worker gives running activities
# COUNTERSIGN_WORKER_SHUTDOWN_GRACE_SECONDS, uvicorn finishes its requests.
CMD ["countersign", "api"]
