# pocketvl worker image, from the base install only: no torch, transformers or local-stack
# wheels (the Triton model runs in Triton's own image). Not built in CI: development
# machines have no Docker engine; tests/contract/test_installs.py checks what it installs.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir .
USER 65534
ENTRYPOINT ["pocketvl"]
CMD ["worker"]
