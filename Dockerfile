# OpenMaaS gateway image. Build:  docker build -t openmaas:0.1.0 .
# With in-process language models (torch, transformers): --build-arg EXTRAS=postgres,redis,s3,llm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=postgres,redis,s3
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# make runs the same install recipe as `make install` on a developer's machine.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY src ./src
RUN make venv VENV=/opt/venv EXTRAS="${EXTRAS}" \
    && find /opt/venv /app/src -name "__pycache__" -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="OpenMaaS" \
      org.opencontainers.image.description="Models as a Service: registry, serving and API management" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENMAAS_HOST=0.0.0.0 \
    OPENMAAS_PORT=8000 \
    OPENMAAS_DATA_DIR=/var/lib/openmaas
# Group 0 may write the data directory: OpenShift runs images as an arbitrary user in it.
RUN groupadd --system --gid 10001 openmaas \
    && useradd --system --uid 10001 --gid openmaas --home-dir /var/lib/openmaas openmaas \
    && mkdir -p /var/lib/openmaas \
    && chown openmaas:0 /var/lib/openmaas \
    && chmod g=u /var/lib/openmaas
# The editable install points at /app/src: both keep the paths they had when built.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /var/lib/openmaas
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["openmaas", "health"]
ENTRYPOINT ["openmaas"]
CMD ["serve"]
