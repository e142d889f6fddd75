FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOUPE_DATA_DIR=/data

RUN groupadd --system loupe && useradd --system --gid loupe --home-dir /app loupe
WORKDIR /app

# The runtime lock: the same versions, with hashes, that `make test` passes with.
COPY requirements/runtime.txt requirements/
RUN pip install --require-hashes -r requirements/runtime.txt
COPY . .
RUN LOUPE_SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /data && chown -R loupe:loupe /data

USER loupe
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind=0.0.0.0:8000", "--workers=4", "--threads=4", "--timeout=120", "--access-logfile=-"]
