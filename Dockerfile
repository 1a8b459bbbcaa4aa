# The single container for CPU machines (NAS boxes), a drop-in for mt-photos-ml's:
#   docker run -d -p 8060:8060 -e API_AUTH_KEY=your-secret -v mt-photos-models:/models mt-photos-triton
# One process tree: the adapter and the embedded Triton server from the PyPI wheel nvidia-pytriton (amd64 and
# arm64 wheels), no NGC image. On first start it exports the models that CLIP_VISUAL_MODEL_NAME,
# FACE_RECOGNITION_MODEL_NAME and OCR_MODEL_NAME name (the reference's defaults where unset) into /models, then
# serves them; later starts find them up to date. A bind mount must be writable by uid 10001.
# Build for both architectures: docker buildx build --platform linux/amd64,linux/arm64 -t mt-photos-triton .
# nvidia-pytriton 0.7.0 ships python-backend stubs for Python 3.8-3.13: 3.11 here.
FROM python:3.11.11-slim-bookworm

# libgomp1: onnxruntime's and OpenCV's OpenMP runtime (the slim image lacks it)
RUN apt-get update \
    && apt-get install --no-install-recommends -y libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/mtphotos mtphotos \
    && mkdir /models && chown mtphotos /models

WORKDIR /opt/mt-photos-triton
COPY pyproject.toml README.md ./
COPY model_repository ./model_repository
COPY mt_photos_triton ./mt_photos_triton
COPY adapter ./adapter
COPY export ./export
# a regular (non-editable) install: the model-repository templates travel inside the package
RUN python -m pip install --no-cache-dir --only-binary=opencv-python-headless ".[embedded]" \
    && python -c "import pytriton, adapter, export; from mt_photos_triton.repository import templates; assert (templates() / 'ocr' / '1' / 'model.py').is_file()"

USER mtphotos
ENV MODEL_REPOSITORY=/models HTTP_HOST=0.0.0.0 HTTP_PORT=8060 PYTHONUNBUFFERED=1
VOLUME ["/models"]
EXPOSE 8060
# the first start downloads and exports models: give it time before failures count
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8060/health/ready', timeout=4)"]
ENTRYPOINT ["mt-photos-triton"]
CMD ["start", "--repository", "/models"]
