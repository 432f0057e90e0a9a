"""Settings for tradebot, read from environment variables.

One module for every environment. With nothing configured the product runs on
the embedded default (SQLite, filesystem broker); ``DATABASE_URL`` and
``CELERY_BROKER_URL`` switch on PostgreSQL and Redis. ``ENVIRONMENT=production``
turns on the safety checks in :mod:`tradebot.config` and forbids training.
"""

from __future__ import annotations

from pathlib import Path

import environ

from tradebot.config import (
    broker_transport,
    broker_transport_options,
    database_from_env,
    require_production_safety,
)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("TRADEBOT_VAR_DIR", default=str(BASE_DIR / "var")))

ENVIRONMENT = env.str("ENVIRONMENT", default="development")
IS_PRODUCTION = ENVIRONMENT == "production"

DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION)
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

require_production_safety(
    environment=ENVIRONMENT, debug=DEBUG, secret_key=SECRET_KEY, allowed_hosts=ALLOWED_HOSTS
)
if not SECRET_KEY:
    # Development and test only: require_production_safety has refused this elsewhere.
    SECRET_KEY = "dev-insecure-" + "x" * 50

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "axes",
    "pgtrigger",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "models_registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from gunicorn itself with DEBUG=False (right after SecurityMiddleware,
    # as WhiteNoise requires): hashed names, gzip/brotli, far-future cache headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires, so it sees the authentication result.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "tradebot.urls"
WSGI_APPLICATION = "tradebot.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "tradebot" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_env(env, default_sqlite=VAR_DIR / "tradebot.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Admin pages show times as ISO 8601 in UTC with the zone (tradebot/formats/en/formats.py).
FORMAT_MODULE_PATH = ["tradebot.formats"]

STATIC_URL = "static/"
# Where `collectstatic` writes and WhiteNoise serves from (e.g. /var/lib/tradebot/static).
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # In production the hashed, compressed copies made by collectstatic; a missing
    # file is an error at collectstatic time, not a broken page later. In development
    # the plain storage, so runserver works without collectstatic.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "artifacts")))
# Market data store used by the engine (Parquet files); see engine/data.
TRADEBOT_DATA_DIR = Path(env.str("TRADEBOT_DATA_DIR", default=str(VAR_DIR / "data")))
TRADEBOT_SYMBOLS = env.list("TRADEBOT_SYMBOLS", default=["BTCUSDT"])
TRADEBOT_INTERVAL = env.str("TRADEBOT_INTERVAL", default="1h")
# Models registered from elsewhere: size limit, and the time the out-of-process check may take.
TRADEBOT_MAX_UPLOAD_BYTES = env.int("TRADEBOT_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024)
TRADEBOT_ONNX_CHECK_TIMEOUT = env.int("TRADEBOT_ONNX_CHECK_TIMEOUT", default=60)
# Each artifact kind has its own cap (models_registry/safe_files.py): a plot is an image.
TRADEBOT_MAX_PLOT_BYTES = env.int("TRADEBOT_MAX_PLOT_BYTES", default=10 * 1024 * 1024)
TRADEBOT_MAX_METADATA_BYTES = env.int("TRADEBOT_MAX_METADATA_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Security (production values hold with HTTPS in front of the app) ---
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=IS_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=IS_PRODUCTION)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = IS_PRODUCTION
SECURE_HSTS_PRELOAD = IS_PRODUCTION
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Login throttling (django-axes) ---
# Per user and address at AXES_FAILURE_LIMIT; per address and per user at much higher
# ceilings (tradebot/login_lockout.py): five wrong passwords from one address lock that
# user there, not everyone behind the address, and neither a spray of many users from one
# address nor of one user from many addresses gets unlimited tries.
AXES_HANDLER = "tradebot.login_lockout.TieredLockoutHandler"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_ADDRESS_FAILURE_LIMIT = env.int("AXES_ADDRESS_FAILURE_LIMIT", default=100)
AXES_USER_FAILURE_LIMIT = env.int("AXES_USER_FAILURE_LIMIT", default=50)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_TIME_HOURS", default=0.5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The address is REMOTE_ADDR only: a client-supplied X-Forwarded-For is not trusted.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
AXES_RESET_ON_SUCCESS = True

# --- Audit chain (docs/audit.md) ---
# The key and anchor file are read from the environment by models_registry.services.audit
# (AUDIT_HMAC_KEY_FILE, AUDIT_ANCHOR_FILE). How many production hosts must answer as
# witnesses when the chain is verified; check --deploy requires at least 1 in production.
AUDIT_MIN_WITNESSES = env.int("AUDIT_MIN_WITNESSES", default=0)

# --- E-mail (console backend unless configured) ---
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="tradebot@localhost")
# The admin's address as people reach it: mails link to a version's page and to the inbox.
TRADEBOT_ADMIN_URL = env.str("TRADEBOT_ADMIN_URL", default="http://127.0.0.1:8000/admin/")
# Every lifecycle audit event can also be POSTed here, signed with HMAC-SHA256 of the
# body under TRADEBOT_WEBHOOK_SECRET (header X-Tradebot-Signature: sha256=<hex>).
TRADEBOT_WEBHOOK_URL = env.str("TRADEBOT_WEBHOOK_URL", default="")
TRADEBOT_WEBHOOK_SECRET = env.str("TRADEBOT_WEBHOOK_SECRET", default="")

# --- Celery ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
    CELERY_BROKER_URL, folder=VAR_DIR / "celery-broker"
)
# filesystem:// runs on tradebot.broker's transport (atomic writes, reads that never crash).
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # "AXES: BEGIN version ..." on every command's stderr is start-up noise.
        "axes.apps": {"level": "WARNING"},
    },
}

# --- Lifecycle gates (see models_registry/gates.py for the defaults) ---
TRADEBOT_GATES = env.json("TRADEBOT_GATES", default={})
TRADEBOT_GATE_OVERRIDES = env.json("TRADEBOT_GATE_OVERRIDES", default={})
# Fee, slippage and window length of gated validation (models_registry/gates.py).
TRADEBOT_VALIDATION_POLICY = env.json("TRADEBOT_VALIDATION_POLICY", default={})
TRADEBOT_VALIDATION_POLICY_OVERRIDES = env.json("TRADEBOT_VALIDATION_POLICY_OVERRIDES", default={})

# --- HTTP API (/api/v1/, models_registry/api; docs/api.md) ---
# Rate limits per token (and per address for requests without one), counted in Django's
# default cache: local memory, per process (no CACHES setting), so with N gunicorn workers a
# token gets at most N times the rate.
TRADEBOT_API_RATE = env.str("TRADEBOT_API_RATE", default="600/minute")
TRADEBOT_API_ANON_RATE = env.str("TRADEBOT_API_ANON_RATE", default="60/minute")
# A token's lifetime when the admin does not say (days), and the longest allowed.
TRADEBOT_API_TOKEN_DAYS = env.int("TRADEBOT_API_TOKEN_DAYS", default=90)
TRADEBOT_API_TOKEN_MAX_DAYS = env.int("TRADEBOT_API_TOKEN_MAX_DAYS", default=365)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["models_registry.api.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["models_registry.api.permissions.HasApiToken"],
    "DEFAULT_THROTTLE_CLASSES": [
        "models_registry.api.throttling.TokenRateThrottle",
        "models_registry.api.throttling.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"token": TRADEBOT_API_RATE, "anonymous": TRADEBOT_API_ANON_RATE},
    "DEFAULT_PAGINATION_CLASS": "models_registry.api.pagination.IdCursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "models_registry.api.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tradebot registry API",
    "DESCRIPTION": (
        "Register models, request validation, paper trading, staging and deploys, and read "
        "what runs where, under the same rules as the admin. Authenticate with "
        "`Authorization: Bearer <token>` (a user's token, created in the admin). Approvals "
        "are a person's act in the admin: the API refuses them. Errors are RFC 9457 problem "
        "details. See docs/api.md."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "models_registry.api.schema.add_problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "models_registry.models.RunStatus",
        "DeploymentStatusEnum": "models_registry.models.DeploymentStatus",
    },
}
