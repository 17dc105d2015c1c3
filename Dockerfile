# syntax=docker/dockerfile:1
FROM python:3.12-slim-trixie AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY stockyard ./stockyard
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim-trixie
# pg_dump and pg_restore for `stockyard backup` / `restore`: Debian trixie's are PostgreSQL 17,
# no older than compose's postgres:16 (an older pg_dump cannot read a newer server).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app stockyard
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER stockyard
ENV STOCKYARD_LOG_FORMAT=json
EXPOSE 8000
# Migrations run separately (`stockyard migrate`, as the owner); the server connects as
# stockyard_app. Compose runs both, in that order.
CMD ["stockyard", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
