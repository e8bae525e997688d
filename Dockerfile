# The operator image: slim, non-root, the operator's wheel and its runtime dependencies only (no harness,
# no dev extras, no build tools, no source tree).
# docker build -t nlpmodel-operator:0.1.0 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && pip install --no-cache-dir --prefix=/install /dist/nlpmodel_operator-*.whl

FROM ${BASE_IMAGE}
# Bytecode is compiled at install time; the root filesystem is read-only in the chart's pod.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# 65532: the chart's runAsUser (runAsNonRoot needs a numeric user to verify).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "nlpmodel_operator"]
