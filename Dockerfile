# One image for every `cbm` command of the stack: the workers, migrations, the
# simulator and `cbm grafana push`. Built by compose (compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project is installed from its tree (editable) because it finds its data
# beside its code: sql/ next to cbm/ (cbm.migrate.SQL_DIR) and grafana/ next to
# services/ (cbm grafana push). A plain `pip install .` would copy only the
# packages and `cbm db migrate` would find no migrations.
COPY pyproject.toml README.md ./
COPY cbm/ cbm/
COPY services/ services/
COPY sql/ sql/
COPY grafana/ grafana/
# serve: the model runtime of the inference worker.
RUN pip install --editable ".[serve]"

# Run as an unprivileged user that owns nothing it runs.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin cbm
USER cbm

ENTRYPOINT ["cbm"]
CMD ["--help"]
