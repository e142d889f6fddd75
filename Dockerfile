FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOUPE_DATA_DIR=/data

RUN groupadd --system loupe && useradd --system --gid loupe --home-dir /app loupe
WORKDIR /app

COPY pyproject.toml README.md ./
RUN pip install --upgrade pip && pip install .
COPY . .
RUN LOUPE_SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /data && chown -R loupe:loupe /data

USER loupe
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind=0.0.0.0:8000", "--workers=4", "--threads=4", "--timeout=120", "--access-logfile=-"]
