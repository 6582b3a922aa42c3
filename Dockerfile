# radiomics-cds: one image for every role (serve, ingest, scorer), chosen by the command.
# Build: docker build -t radiomics-cds .   Run: docker run -p 11112:11112 -p 8080:8080 radiomics-cds
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN python -m venv /opt/radiomics-cds \
 && /opt/radiomics-cds/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/radiomics-cds/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 rcds \
 && useradd --system --uid 10001 --gid rcds --home-dir /var/lib/radiomics-cds --no-create-home rcds \
 && mkdir -p /var/lib/radiomics-cds \
 && chown rcds:rcds /var/lib/radiomics-cds
COPY --from=build /opt/radiomics-cds /opt/radiomics-cds
ENV PATH=/opt/radiomics-cds/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RCDS_VAR_DIR=/var/lib/radiomics-cds
# The spool, index and outbox: mount a persistent volume here (the root filesystem can be read-only).
VOLUME ["/var/lib/radiomics-cds"]
USER 10001:10001
EXPOSE 11112 8080 50051
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["radiomics-cds"]
CMD ["serve"]
