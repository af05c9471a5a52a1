# syntax=docker/dockerfile:1
# posp: one image for every program; the command picks it (deploy/docker/entrypoint.sh):
#   docker run posp serve                 the switch (terminal port 5800, metrics 9100)
#   docker run posp hsm-sim               the HSM simulator (1500, metrics 9102)
#   docker run posp issuer-sim serve      the card network simulator (9583; metrics with
#                                         --metrics-port, 9103 in deploy/compose.yaml)
#   docker run posp posp-fleet …          the terminal fleet;  posp-conformance …
#   docker run posp terminal add …        any `posp` admin command
# Build:  docker build -t posp .

# --- builder: wheels and a virtualenv, with the build tools that never ship ------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first, so the dependency layer is cached while only sources change.  The
# runtime dependencies of pyproject.toml, at the exact versions of requirements.lock
# (`make lock` regenerates it), so every build installs the same thing.
COPY pyproject.toml README.md requirements.lock ./
RUN pip install --upgrade pip setuptools wheel \
 && python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(d))" \
 && pip install -c requirements.lock -r /tmp/requirements.txt
# The C compiler for the compiled build; it stays in this stage.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY setup.py compiled-modules.txt ./
COPY tools ./tools
COPY posp ./posp
COPY hsm_sim ./hsm_sim
COPY issuer_sim ./issuer_sim
COPY terminals ./terminals
# A regular (non-editable) install, compiled: the modules of compiled-modules.txt
# built by mypyc (`make test-compiled` is the suite on the same build), every other
# module pure Python.  mypy (with mypyc) is a build tool only: it and the packages
# only it needs leave the venv before the wheel is installed.  The runtime image
# holds no source tree.
RUN pip install -c requirements.lock mypy \
 && POSP_COMPILE=1 pip wheel --no-deps --no-build-isolation -w /tmp/wheels . \
 && pip uninstall -y -q mypy librt ast-serialize pathspec mypy-extensions \
 && pip install --no-deps /tmp/wheels/posp-*.whl \
 && python -m compileall -q /opt/venv

# --- runtime: the virtualenv only, run as an unprivileged user -------------------------
FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="posp" \
      org.opencontainers.image.description="Acquirer switch (POSP) with HSM, card network and terminal simulators" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 posp \
 && useradd --system --uid 10001 --gid posp --home-dir /var/lib/posp --shell /usr/sbin/nologin posp \
 && mkdir -p /var/lib/posp /etc/posp \
 && chown posp:posp /var/lib/posp
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/posp-entrypoint
# Listen on every interface inside the container (the programs default to 127.0.0.1);
# data in the volume-friendly /var/lib/posp.  Each program reads only its own prefix:
# POSP_ (switch), POSP_HSM_ (hsm-sim), POSP_ISSUER_ (issuer-sim).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POSP_DATA_DIR=/var/lib/posp \
    POSP_LISTEN_HOST=0.0.0.0 \
    POSP_METRICS_HOST=0.0.0.0 \
    POSP_HSM_HOST=0.0.0.0 \
    POSP_ISSUER_HOST=0.0.0.0
USER posp
WORKDIR /var/lib/posp
VOLUME ["/var/lib/posp"]
# terminal link, switch metrics, HSM, HSM metrics, network link, issuer metrics
EXPOSE 5800 9100 1500 9102 9583 9103
# The programs drain in-flight work on SIGTERM (compose: stop_grace_period).
STOPSIGNAL SIGTERM
# A real protocol exchange with whichever program is PID 1 (see posp/healthcheck.py):
# terminal echo 0820/301 and GET /ready for the switch, B2 for hsm-sim, 0800/301 for
# issuer-sim.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["posp-healthcheck", "--timeout-s", "4", "auto"]
ENTRYPOINT ["posp-entrypoint"]
CMD ["serve"]
