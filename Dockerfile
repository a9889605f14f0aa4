# The cardioseg MONAI Deploy app as an inference image: a DICOM short-axis cine study in; DICOM SEG, NIfTI
# labels, clinical indices, a report and a picture out. ONNX Runtime on the GPU (CUDA execution provider,
# from onnxruntime-gpu), on the CPU where the container sees no GPU.
#
# Build (from the repository root; the exported bundle is copied into the image):
#   make demo                                           # writes demo_output/run/cardiac_sax_seg, the default
#   docker build -t cardioseg-app .
#   cardioseg export RUN --out model_bundle             # or ship another export:
#   docker build --build-arg BUNDLE=model_bundle -t cardioseg-app .
# Run (Holoscan recommends a 32 MB stack):
#   docker run --rm --gpus all --ulimit stack=33554432 --user "$(id -u):$(id -g)" \
#     -v /path/to/study:/var/holoscan/input:ro -v /path/to/out:/var/holoscan/output cardioseg-app
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# --- stage 1: the wheel of this package (the app is not in it: it is copied on its own below) ---------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY cardioseg ./cardioseg
COPY bundles ./bundles
COPY pretraining/configs ./pretraining/configs
COPY experiments/configs ./experiments/configs
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- stage 2: the inference image ----------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ARG BUNDLE=demo_output/run/cardiac_sax_seg
ARG CARDIOSEG_VERSION=0.1.0
# onnxruntime-gpu must be built for the base image's CUDA major version (13 here, as torch and holoscan-cu13)
ARG ONNXRUNTIME_GPU_VERSION=1.31.1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:${PATH} \
    HOLOSCAN_INPUT_PATH=/var/holoscan/input \
    HOLOSCAN_OUTPUT_PATH=/var/holoscan/output \
    HOLOSCAN_MODEL_PATH=/opt/holoscan/models/cardiac_sax_seg

# The distribution's Python 3.12; its patch releases follow Ubuntu's security updates, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# cardioseg with the deploy (MONAI Deploy App SDK, Holoscan) and gpu (onnxruntime-gpu) extras. The base
# dependency onnxruntime and onnxruntime-gpu install the same module: the CPU one is removed afterwards
# and the GPU one reinstalled, so that the CUDA execution provider is the one left.
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "cardioseg[deploy,gpu]==${CARDIOSEG_VERSION}" \
    && pip uninstall -y onnxruntime onnxruntime-gpu \
    && pip install --no-cache-dir --no-deps "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && rm -rf /wheels

COPY app /opt/holoscan/app
COPY ${BUNDLE} /opt/holoscan/models/cardiac_sax_seg

RUN groupadd --system --gid 10001 cardioseg \
    && useradd --system --create-home --uid 10001 --gid 10001 cardioseg \
    && mkdir -p /var/holoscan/input /var/holoscan/output \
    && chown 10001:10001 /var/holoscan/output
USER 10001:10001
WORKDIR /var/holoscan

ENTRYPOINT ["python", "/opt/holoscan/app"]
