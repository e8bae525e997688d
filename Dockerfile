# The operator image: slim, non-root, only the runtime dependencies (no dev extras, no build tools).
# docker build -t nlpmodel-operator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# Bytecode is compiled at install time; the root filesystem is read-only in the chart's pod.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# 65532: the chart's runAsUser (runAsNonRoot needs a numeric user to verify).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "nlpmodel_operator"]
