# medi2i command line and DICOM node in a container.
#
# CPU (the default; torch's CPU wheel, about 1 GB smaller than the CUDA build):
#   docker build -t medi2i:cpu .
# CUDA (torch's CUDA 12.8 wheels bring their own CUDA libraries; the host needs an
# NVIDIA driver and the NVIDIA Container Toolkit, and runs it with --gpus all):
#   docker build -t medi2i:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# Smoke test of a built image (the CLI, the demo, ONNX export and predict, a MONAI
# bundle's run, the DICOM node): docker/smoke.sh IMAGE
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# torch first, from the index the variant names, so that medi2i's range does not pull
# the other build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/medi2i
COPY pyproject.toml README.md ./
COPY medi2i ./medi2i
COPY plugins ./plugins
# the onnx extra for `medi2i export --format onnx` and predicting with a .onnx file,
# the bundle extra (fire, jsonschema) for `python -m monai.bundle` on an exported
# bundle: the image's user cannot pip install them later
RUN pip install ".[onnx,bundle]" plugins/medi2i-* \
    && rm -rf /opt/medi2i/build plugins/*/build

# never run as root; /data is where inputs are mounted and outputs written. The home
# and /data are writable by any user, so that `docker run --user "$(id -u):$(id -g)"`
# (outputs owned by the host's user) works too: that uid has no passwd entry, and
# HOME is set here rather than left to Docker's "/"
RUN useradd --create-home --uid 1000 medi2i && mkdir /data && chown medi2i /data \
    && chmod 1777 /home/medi2i /data
ENV HOME=/home/medi2i
USER medi2i
WORKDIR /data
VOLUME /data
# the DICOM node's default port (medi2i dicom serve --host 0.0.0.0 to reach it)
EXPOSE 11112

ENTRYPOINT ["medi2i"]
CMD ["--help"]
