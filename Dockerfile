# radiomics-cds: one image for every role (serve, ingest, scorer), chosen by the command.
#   docker build -t radiomics-cds:0.1.0 .
#   docker run --read-only -p 11112:11112 -p 8080:8080 -v rcds-var:/var/lib/radiomics-cds radiomics-cds:0.1.0
# Runs as uid 10001 with a read-only root filesystem: the only writable places are the volumes
# /var/lib/radiomics-cds (spool, index, outbox: keep it) and /tmp (DICOM datasets being received).

# Build stage: pyradiomics-bhklab is published as source only and compiles two C extensions, so
# this stage has a compiler; the runtime stage gets the finished virtualenv and no compiler.
FROM python:3.13.16-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential=12.9 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# pyproject.toml names README.md as the package's readme: the build needs it.
COPY pyproject.toml README.md ./
COPY service ./service
# pip compiles every module to bytecode while installing, so the read-only runtime never needs
# to write __pycache__ (PYTHONDONTWRITEBYTECODE below stops it from trying).
RUN python -m venv /opt/radiomics-cds \
 && /opt/radiomics-cds/bin/pip install --no-cache-dir . \
 && /opt/radiomics-cds/bin/radiomics-cds --version

FROM python:3.13.16-slim-bookworm
LABEL org.opencontainers.image.title="radiomics-cds" \
      org.opencontainers.image.description="Imaging-biomarker decision support: DICOM in, TID 1500 SR and FHIR R4 out" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 rcds \
 && useradd --system --uid 10001 --gid rcds --home-dir /var/lib/radiomics-cds --no-create-home \
            --shell /usr/sbin/nologin rcds \
 && mkdir -p /var/lib/radiomics-cds \
 && chown rcds:rcds /var/lib/radiomics-cds \
 && chmod 0750 /var/lib/radiomics-cds
# Root-owned and read-only for the service user: the code cannot be changed at run time.
COPY --from=build /opt/radiomics-cds /opt/radiomics-cds
# TMPDIR: pynetdicom receives each dataset into a temporary file before it is spooled.
ENV PATH=/opt/radiomics-cds/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    RCDS_VAR_DIR=/var/lib/radiomics-cds
VOLUME ["/var/lib/radiomics-cds", "/tmp"]
USER 10001:10001
WORKDIR /var/lib/radiomics-cds
EXPOSE 11112 8080 50051
# Every role answers GET /healthz on RCDS_HTTP_PORT (default 8080): ingest and serve (worker and
# outbox threads alive) and the scorer (its HTTP server beside gRPC). Kubernetes ignores
# HEALTHCHECK: the Helm chart declares its own probes (gRPC health for the scorer).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RCDS_HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["radiomics-cds"]
CMD ["serve"]
