# One slim, non-root image for every SPIRAL role and the operator; the command picks the role:
#   spiral serve actor|policy-learner|discriminator-learner|replay --config /etc/spiral/config.yaml
#   spiral-operator --all-namespaces
# Build: docker build -t ghcr.io/spiral-k8s/spiral:0.1.0 .   (README "Build the image": loading it into kind/minikube, registries)

# ---- build: a virtualenv with torch (CPU wheel) and the project --------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/spiral
ENV PATH=/opt/spiral/bin:$PATH
# Every package at the version the tests ran with: CI installs the same file (.ci/run).
COPY services/constraints.txt /tmp/constraints.txt
# torch first, alone, from the CPU index (the default index would pull gigabytes of CUDA wheels);
# its own dependencies come with the project below, pinned like the rest.
RUN pip install --no-deps -c /tmp/constraints.txt torch --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY operator/ operator/
RUN pip install -c /tmp/constraints.txt . && pip check && rm -rf /src /tmp/constraints.txt

# ---- runtime: shared libraries for the renderers, the venv, a non-root user ---------------------
FROM python:3.11-slim-bookworm
# libmypaint-1.5-1 is Debian 12's libmypaint 1.6 (soname 1.5); mypaint-brushes 2.0 provides
# classic/dry_brush. libosmesa6 renders MuJoCo on the CPU; libegl1/libgl1 cover MUJOCO_GL=egl/glfw.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmypaint-1.5-1 mypaint-brushes libosmesa6 libegl1 libgl1 libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/spiral /opt/spiral
RUN groupadd --gid 10001 spiral && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin spiral
ENV PATH=/opt/spiral/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MUJOCO_GL=osmesa \
    PYOPENGL_PLATFORM=osmesa
# Numeric user so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# gRPC, service metrics, operator metrics, operator liveness.
EXPOSE 50051 9400 8080 8081
ENTRYPOINT []
CMD ["spiral", "--help"]
