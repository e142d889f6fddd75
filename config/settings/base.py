"""Loupe settings. Everything configurable comes from the environment (see README)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(env_str("LOUPE_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("LOUPE_DEBUG", False)
SECRET_KEY = env_str("LOUPE_SECRET_KEY", "")
if not SECRET_KEY:
    # The embedded default keeps a generated key beside its data, so sessions survive restarts
    # without anyone having to invent a secret.
    from config.secret import read_or_create_secret_key

    SECRET_KEY = read_or_create_secret_key(DATA_DIR / "secret_key")

ALLOWED_HOSTS = env_list("LOUPE_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Where ``manage.py serve`` (``make run``) listens, unless --host/--port say otherwise.
LOUPE_HOST = env_str("LOUPE_HOST", "127.0.0.1")
LOUPE_PORT = env_int("LOUPE_PORT", 8000)
# The first admin account ``ensure_admin`` creates; an empty password means a generated one,
# kept in DATA_DIR/initial_admin_password.
LOUPE_ADMIN_USER = env_str("LOUPE_ADMIN_USER", "admin")
LOUPE_ADMIN_PASSWORD = env_str("LOUPE_ADMIN_PASSWORD", "")
CSRF_TRUSTED_ORIGINS = env_list("LOUPE_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "curation",
    "labelling",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CsrfViewMiddleware, which reads form bodies: an oversized body is refused unread.
    "config.middleware.RequestBodyLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A lost database connection answers 503 with Retry-After, not 500.
    "config.middleware.DatabaseUnavailableMiddleware",
    # Text with U+0000, which PostgreSQL refuses, answers 400, not 500.
    "config.middleware.NulCharacterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "curation:library"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------------
# Embedded default: SQLite under LOUPE_DATA_DIR, in WAL mode so the web process and the worker
# can read while the other writes. DATABASE_URL switches to PostgreSQL.
_database_url = env_str("DATABASE_URL", "")
if _database_url:
    # Connections live a minute and are checked before each request's first query: after a
    # PostgreSQL restart or fail-over, a dead connection is replaced instead of answering 503.
    DATABASES = {
        "default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "loupe.sqlite3"),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Storage --------------------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("LOUPE_MEDIA_ROOT", str(DATA_DIR / "media")))
STATIC_ROOT = DATA_DIR / "static"
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

_storage_backend = env_str("LOUPE_STORAGE", "local")
if _storage_backend == "local":
    _default_storage = {
        "BACKEND": "curation.storage.AtomicFileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
elif _storage_backend == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("LOUPE_S3_BUCKET", "loupe"),
            "endpoint_url": env_str("LOUPE_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("LOUPE_S3_REGION", "") or None,
            "access_key": env_str("LOUPE_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("LOUPE_S3_SECRET_ACCESS_KEY", "") or None,
            "default_acl": None,
            "querystring_auth": True,
            # Signed URLs (export downloads) in the signature every region accepts.
            "signature_version": "s3v4",
            "file_overwrite": True,
        },
    }
else:
    raise ImproperlyConfigured(f"LOUPE_STORAGE must be 'local' or 's3', not {_storage_backend!r}")

STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads larger than this spill to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("LOUPE_MAX_FILES_PER_REQUEST", 200, minimum=1)
# Largest request body, refused (413) before any of it is read; the archive and model uploads
# accept up to LOUPE_ZIP_MAX_BYTES / LOUPE_MAX_MODEL_BYTES (plus their form fields) instead.
LOUPE_MAX_UPLOAD_BYTES = env_int("LOUPE_MAX_UPLOAD_BYTES", 1024**3, minimum=1)
FILE_UPLOAD_TEMP_DIR = None

# --- Images ---------------------------------------------------------------------------------
LOUPE_MAX_IMAGE_PIXELS = env_int("LOUPE_MAX_IMAGE_PIXELS", 100_000_000, minimum=1)
LOUPE_MAX_IMAGE_BYTES = env_int("LOUPE_MAX_IMAGE_BYTES", 50 * 1024 * 1024, minimum=1)
LOUPE_THUMBNAIL_SIZE = env_int("LOUPE_THUMBNAIL_SIZE", 256, minimum=32)
LOUPE_ZIP_MAX_BYTES = env_int("LOUPE_ZIP_MAX_BYTES", 2 * 1024**3, minimum=1)
LOUPE_ZIP_MAX_UNCOMPRESSED_BYTES = env_int(
    "LOUPE_ZIP_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3, minimum=1
)
LOUPE_ZIP_MAX_ENTRIES = env_int("LOUPE_ZIP_MAX_ENTRIES", 100_000, minimum=1)
LOUPE_ZIP_MAX_RATIO = env_int("LOUPE_ZIP_MAX_RATIO", 100, minimum=1)
# Model registry: largest ONNX file accepted.
LOUPE_MAX_MODEL_BYTES = env_int("LOUPE_MAX_MODEL_BYTES", 1024**3, minimum=1)
# Most nodes a model's graphs may hold (subgraphs and functions included). Classifiers have a
# few hundred to a few thousand (ResNet-152 about 500, EfficientNet-Lite0 94); validating
# 200,000 took 36 s within 1.5 GiB here, 1,000,000 six minutes and 4 GiB (README).
LOUPE_MAX_MODEL_NODES = env_int("LOUPE_MAX_MODEL_NODES", 200_000, minimum=1)
# Validation (the onnx checker and a dry run) runs in a child process of the worker with this
# much address space and this much time; a model that needs more is refused. The child itself
# (Django, onnx, onnxruntime) takes about 250 MiB; a 1 GiB model needs between 4 and 6 GiB.
LOUPE_MODEL_VALIDATION_MEMORY = env_int(
    "LOUPE_MODEL_VALIDATION_MEMORY", 6 * 1024**3, minimum=256 * 1024**2
)
LOUPE_MODEL_VALIDATION_SECONDS = env_int("LOUPE_MODEL_VALIDATION_SECONDS", 600, minimum=1)
# An orphan (a stored original with no row) younger than this may belong to an import still in
# flight, so the sweeper leaves it alone.
LOUPE_ORPHAN_GRACE_SECONDS = env_int("LOUPE_ORPHAN_GRACE_SECONDS", 6 * 3600)
LOUPE_PROCESS_CHUNK = env_int("LOUPE_PROCESS_CHUNK", 200, minimum=1)
# A running job that has reported no progress for this long lost its worker and may be claimed
# again by a redelivered task.
LOUPE_JOB_STALE_SECONDS = env_int("LOUPE_JOB_STALE_SECONDS", 600, minimum=30)
# Near-duplicates: largest Hamming distance between 64-bit pHashes (see README for the choice).
LOUPE_DUPLICATE_MAX_DISTANCE = env_int("LOUPE_DUPLICATE_MAX_DISTANCE", 8, minimum=0)
# Production logs: a top score at or above this was shown to the user as the answer (the happy
# path); below it the user was asked to try again (the sad path).
LOUPE_PRODUCTION_THRESHOLD = env_float("LOUPE_PRODUCTION_THRESHOLD", 0.95, minimum=0.0, maximum=1.0)
# Embeddings: the model version (by number) whose embedding output feeds "more like this",
# embedding near-duplicates and out-of-distribution scores; 0 means the lowest-numbered version
# that has one (the installed backbone).
LOUPE_EMBEDDING_MODEL = env_int("LOUPE_EMBEDDING_MODEL", 0, minimum=0)
# Embedding near-duplicate candidates: smallest cosine similarity of a pair; every candidate is
# verified like the hash candidates (see README, "Near-duplicate detection").
LOUPE_EMBEDDING_DUPLICATE_SIMILARITY = env_float(
    "LOUPE_EMBEDDING_DUPLICATE_SIMILARITY", 0.90, minimum=0.0, maximum=1.0
)
# Out-of-distribution score: mean cosine distance to this many nearest labelled images; images
# scoring at or above the threshold count as unlike the library on the production dashboard.
LOUPE_OOD_NEIGHBOURS = env_int("LOUPE_OOD_NEIGHBOURS", 10, minimum=1)
LOUPE_OOD_THRESHOLD = env_float("LOUPE_OOD_THRESHOLD", 0.5, minimum=0.0, maximum=2.0)
# Bulk inference threads, each decoding a batch and running the model on it; 0: one per core.
LOUPE_DECODE_THREADS = env_int("LOUPE_DECODE_THREADS", 0, minimum=0)
# onnxruntime threads of the sessions that serve single requests (predict); 0: one per core.
LOUPE_INFERENCE_THREADS = env_int("LOUPE_INFERENCE_THREADS", 0, minimum=0)
# How long an image shown to one SME stays out of other SMEs' queues.
LOUPE_CLAIM_SECONDS = env_int("LOUPE_CLAIM_SECONDS", 600, minimum=10)

# --- Celery ---------------------------------------------------------------------------------
# Embedded default: kombu's filesystem transport under LOUPE_DATA_DIR, no server needed.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
else:
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LOUPE_TASK_SOFT_TIME_LIMIT", 3600, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
# A job (an archive import, a scan, a recompute, embeddings, an evaluation, an export…) runs as
# one task over the whole library: at bulk-inference speed a million images take hours, so jobs
# get their own limit (see curation.services.jobs.JOB_TASK_LIMITS).
LOUPE_JOB_SOFT_TIME_LIMIT = env_int("LOUPE_JOB_SOFT_TIME_LIMIT", 24 * 3600, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "process-pending-images": {"task": "curation.process_pending_images", "schedule": 600.0},
    "requeue-stalled-jobs": {"task": "curation.requeue_stalled_jobs", "schedule": 300.0},
    "sweep-orphans": {
        "task": "curation.sweep_orphans",
        "schedule": float(env_int("LOUPE_SWEEP_INTERVAL_SECONDS", 24 * 3600, minimum=60)),
    },
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsLabeller"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["config.api.ListFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "config.api.JSONObjectParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # Failed sign-ins per address and username, and per address across usernames (a password
    # spray), e.g. "10/min" and "50/hour" (accounts/throttling.py).
    "DEFAULT_THROTTLE_RATES": {
        "login": env_str("LOUPE_LOGIN_RATE", "10/min"),
        "login_address": env_str("LOUPE_LOGIN_ADDRESS_RATE", "50/hour"),
    },
}
REST_KNOX = {
    # Machine tokens do not expire on their own; they are revoked explicitly.
    "TOKEN_TTL": None,
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loupe API",
    "DESCRIPTION": "Curate and label an image-classification library.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs describe a private service: signed-in users only.
    "SERVE_PERMISSIONS": ["accounts.permissions.IsLabeller"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ImageStatusEnum": "curation.models.ImageStatus",
        "JobStatusEnum": "curation.models.JobStatus",
        "ClassKindEnum": "curation.models.ClassKind",
        "SourceEnum": "curation.models.Source",
        "ImportKindEnum": "curation.models.ImportKind",
        "BenchmarkKindEnum": "curation.models.BenchmarkKind",
        "DatasetStatusEnum": "curation.models.DatasetStatus",
        "DuplicateStatusEnum": "curation.models.DuplicateStatus",
        "OpinionStatusEnum": "labelling.models.OpinionStatus",
        "ActionKindEnum": "labelling.models.ActionKind",
    },
}

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Passwords chosen in the admin's forms and with createsuperuser/changepassword: not short, not
# common, not all digits, not like the username.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Served over HTTPS (directly or behind a proxy that sets X-Forwarded-Proto): secure cookies,
# redirects to HTTPS and HSTS.
HTTPS = env_bool("LOUPE_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("LOUPE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
# Both reach beyond Loupe's own host name, so they are the deployer's decision.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("LOUPE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("LOUPE_HSTS_PRELOAD", False)
# `check --deploy` asks for both; leaving them off is a decision, not an oversight, so the check
# stays quiet about them (and speaks again if HSTS itself is off).
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS or not SECURE_HSTS_SECONDS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD or not SECURE_HSTS_SECONDS else ["security.W021"]),
]
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("LOUPE_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOUPE_LOG_LEVEL", "INFO")},
}
# Reverse proxies in front of Loupe that append the client's address to X-Forwarded-For; 0 means
# clients connect directly and REMOTE_ADDR is their address (used to rate-limit sign-ins).
LOUPE_PROXY_COUNT = env_int("LOUPE_PROXY_COUNT", 0)
# The cache holds failed sign-in counters: Redis when REDIS_URL is set (shared by every web
# process on every machine), else a folder under LOUPE_DATA_DIR (shared by this machine's).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "loupe",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
