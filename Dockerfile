# syntax=docker/dockerfile:1
# yfproxy's image: the service in a venv on Python 3.11 slim, run as a non-root user.
#
#   docker build -t yfproxy:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 -e YFPROXY__REDIS__URL=redis://HOST:6379/0 yfproxy:0.1.0
#
# Configuration: /etc/yfproxy/proxy.toml (the repository's default is baked in; mount your
# own over it, read-only) plus YFPROXY__SECTION__KEY environment variables, which win over
# the file. docker-compose.yml runs it beside Redis. docs/operations.md is the runbook.
#
# The base is pinned to an exact Python patch release and Debian release. Pin its digest
# too when you build for production (docker buildx imagetools inspect <image> prints it):
# FROM python:3.11.17-slim-bookworm@sha256:<digest>. It is not written here because it
# could not be resolved and checked where this file was written (no registry access).
FROM python:3.11.17-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/yfproxy
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}"

# ---- build: install the project (no test extras) into a self-contained venv --------------
# tests/test_packaging.py replays this stage's WORKDIR, COPY and RUN steps in a fresh venv
# and runs `yfproxy --version` and `yfproxy check-config` from it: keep them plain.
FROM base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv "$VIRTUAL_ENV" && "$VIRTUAL_ENV/bin/pip" install pip==26.3
# Only what the distribution is built from: pyproject.toml names README.md as the readme and
# packages proxy, policies, validators and loadtests (the Yahoo simulator, for the demo).
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY policies ./policies
COPY validators ./validators
COPY loadtests ./loadtests
RUN "$VIRTUAL_ENV/bin/pip" install . && "$VIRTUAL_ENV/bin/yfproxy" --version

# ---- runtime: the venv and the configuration, nothing else -----------------------------
FROM base AS runtime
LABEL org.opencontainers.image.title="yfproxy" \
      org.opencontainers.image.description="Caching proxy for Yahoo Finance's chart endpoint, served from Redis" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
RUN useradd --system --uid 10001 --user-group --no-log-init \
        --home-dir /var/lib/yfproxy --create-home --shell /usr/sbin/nologin yfproxy
COPY --from=build /opt/yfproxy /opt/yfproxy
COPY proxy.toml /etc/yfproxy/proxy.toml
# Inside a container the server must listen on every interface; Redis comes from compose
# (or YFPROXY__REDIS__URL), so the private embedded redis-server stays off.
ENV YFPROXY__SERVER__HOST=0.0.0.0 \
    YFPROXY__SERVER__PORT=8080 \
    YFPROXY__REDIS__URL=redis://redis:6379/0 \
    YFPROXY__REDIS__EMBEDDED=false \
    YFPROXY__LOGGING__FORMAT=json
WORKDIR /var/lib/yfproxy
# Numeric, so orchestrators can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# /healthz answers while the process serves; readiness (Redis, refresher) is /readyz.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('YFPROXY__SERVER__PORT', '8080'), timeout=2)"]
# SIGINT takes the same graceful path as Ctrl-C in a terminal; SIGTERM does too.
STOPSIGNAL SIGINT
# `docker run IMAGE check-config /etc/yfproxy/proxy.toml` or `IMAGE --version` also work.
ENTRYPOINT ["yfproxy"]
CMD ["serve", "--config", "/etc/yfproxy/proxy.toml"]
