# nayax-ev-exporter: Prometheus exporter for Nayax EV charging meters.
#
#   docker build -t nayax-ev-exporter .      # BuildKit (the default builder)
#   docker run --rm -p 9877:9877 nayax-ev-exporter --demo --web.listen-address=:9877
#
# BASE needs only python3 (>= 3.11) with the venv module. The default is the
# official slim image; CI builds from a debootstrapped Debian bookworm instead
# (ci/container/build-base-image.sh), whose pip refuses system installs
# (PEP 668) and which has `python3` but no `python`. Installing into a venv at
# /opt/venv and calling `python3` works the same on both.
ARG BASE=python:3.11-slim

# --- builder: the project's wheel plus wheels of every dependency -------------
FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/build
WORKDIR /src
# .dockerignore admits only pyproject.toml, README.md, LICENSE and exporter/.
COPY . .
RUN /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels .

# --- final: the wheels installed into a venv; no compiler, no pip, no sources --
FROM ${BASE}
LABEL org.opencontainers.image.title="nayax-ev-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Nayax EV charging meters (Lynx API evDashboard)" \
      org.opencontainers.image.licenses="Apache-2.0"
# glibc malloc: a fixed 1 MiB mmap threshold returns freed exposition buffers
# to the system, and 2 arenas stop idle threads hoarding memory (see
# docs/performance.md). The same two lines are in the Kubernetes StatefulSet,
# docker-compose.yml and the benchmark's exporter process.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576
# The wheels are bind-mounted from the builder, so they never land in a layer.
# --no-index: this stage installs exactly what the builder resolved. pip and
# setuptools leave the venv afterwards; bytecode is compiled now because the
# root filesystem is read-only at run time (PYTHONDONTWRITEBYTECODE=1).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        /wheels/nayax_ev_exporter-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && nayax-ev-exporter --version
# 65532: the conventional "nonroot" uid; numeric so Kubernetes' runAsNonRoot can
# verify it without a passwd entry.
USER 65532:65532
EXPOSE 9877
# No curl in the image: the check is a one-line Python HTTP GET (a non-2xx
# answer or a refused connection raises, so the exit status is non-zero). Set
# NAYAX_EV_HEALTHCHECK_URL when --web.listen-address moves the port.
ENV NAYAX_EV_HEALTHCHECK_URL=http://127.0.0.1:9877/-/healthy
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['NAYAX_EV_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["nayax-ev-exporter"]
CMD ["--config.file=/etc/nayax-ev-exporter/config.yaml"]
