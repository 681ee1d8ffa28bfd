# syntax=docker/dockerfile:1
# Event Router image: one image for every role, chosen by the command (see docker-compose.yml):
#   router serve --host 0.0.0.0 --port 8000 --workers 2    the web (ingest, API, /health)
#   router worker                                          delivery
#   router db upgrade                                      migrations (one-shot)
# Rules are not baked in: mount them read-only at /rules (ROUTER_RULES_DIR).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY router ./router
COPY web ./web
# A regular (not editable) install: the wheel carries the migrations and the web assets; every
# dependency at the version constraints.txt pins.
RUN /opt/venv/bin/pip install -c constraints.txt '.[pg]' && /opt/venv/bin/router --version

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROUTER_RULES_DIR=/rules
RUN groupadd --system --gid 10001 router \
    && useradd --system --uid 10001 --gid router --home-dir /app --create-home --shell /usr/sbin/nologin router \
    && mkdir -p /rules
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER router:router
EXPOSE 8000
ENTRYPOINT ["router"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
