"""ptracker settings: one file, driven by environment variables.

Every value has a default that runs with no environment at all (SQLite in the data
directory). Bad values do not raise here, where they would end in a traceback:
they are collected in CONFIG_ERRORS and reported by a system check
(monitoring.checks), which stops `ptracker run`, `migrate` and `qcluster` with a
clear message.
"""

import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
CONFIG_ERRORS: list[str] = []


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def envbool(name: str, default: bool = False) -> bool:
    value = env(name).lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    CONFIG_ERRORS.append(f"{name} must be true or false (1/0, yes/no), got {value!r}.")
    return default


def envint(name: str, default: int, low: int, high: int, unit: str = "") -> int:
    value = env(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        CONFIG_ERRORS.append(
            f"{name} must be a whole number from {low} to {high}{unit}, got {value!r}."
        )
        return default
    return number


def default_data_dir() -> Path:
    data_home = env("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "ptracker"


DATA_DIR = Path(env("PTRACKER_DATA_DIR") or default_data_dir()).expanduser().resolve()
try:
    (DATA_DIR / "static").mkdir(parents=True, exist_ok=True)
except OSError as exc:
    CONFIG_ERRORS.append(f"PTRACKER_DATA_DIR {str(DATA_DIR)!r} cannot be created: {exc}.")


def secret_key() -> str:
    """SECRET_KEY from the environment, else generated once and kept in the data dir."""
    if env("SECRET_KEY"):
        return env("SECRET_KEY")
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        CONFIG_ERRORS.append(f"Cannot read {path}: {exc}.")
        return secrets.token_urlsafe(50)
    key = secrets.token_urlsafe(50)
    try:
        # O_EXCL: when two processes start at once, one writes and both read its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        CONFIG_ERRORS.append(f"Cannot write {path}: {exc}.")
    return key


SECRET_KEY = secret_key()
DEBUG = envbool("DEBUG")
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# --- ptracker's own settings -------------------------------------------------
# Seconds between two samples of this machine.
PTRACKER_SAMPLE_INTERVAL = envint("PTRACKER_SAMPLE_INTERVAL", 5, 1, 60, " seconds")
# Processes stored per sample: the top N by CPU and the top N by memory (plus watched ones).
PTRACKER_TOP_N = envint("PTRACKER_TOP_N", 25, 1, 1000)
# A sampler task samples for this long, then hands over to a fresh task (see monitoring.tasks).
PTRACKER_SAMPLER_SHIFT = envint("PTRACKER_SAMPLER_SHIFT", 300, 10, 3600, " seconds")
# /debug/monitor/*: ptracker's own process tree, on demand (admins only when on).
PTRACKER_DEBUG_MONITOR = envbool("PTRACKER_DEBUG_MONITOR")
PTRACKER_REDIS_URL = env("PTRACKER_REDIS_URL")
if PTRACKER_REDIS_URL and not PTRACKER_REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    CONFIG_ERRORS.append(
        f"PTRACKER_REDIS_URL must start with redis://, rediss:// or unix://, "
        f"got {PTRACKER_REDIS_URL!r}."
    )
    PTRACKER_REDIS_URL = ""


def networks(name: str) -> list:
    """Comma-separated addresses or CIDR networks."""
    result = []
    for part in filter(None, (p.strip() for p in env(name).split(","))):
        try:
            result.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            CONFIG_ERRORS.append(f"{name}: {part!r} is not an address or network (10.0.0.0/8).")
    return result


# Addresses that may read /metrics without a token (a Prometheus server).
PTRACKER_METRICS_ALLOW = networks("PTRACKER_METRICS_ALLOW")

# Called with (host, sample) after each stored batch: how alerts follow the samples.
PTRACKER_AFTER_INGEST = ["alerts.evaluation.after_batch"]

# --- Email (alert notifications) ------------------------------------------------------
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, 1, 65535)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "ptracker@localhost")

# --- Database ------------------------------------------------------------------
SQLITE_OPTIONS = {
    # WAL lets the dashboard read while the sampler writes; IMMEDIATE takes the write
    # lock at BEGIN, so two writers queue on the busy timeout instead of one failing
    # with "database is locked" when it upgrades a read lock mid-transaction.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}


def database() -> dict:
    url = env("DATABASE_URL")
    sqlite_default = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "ptracker.sqlite3"),
    }
    if url:
        try:
            config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        except Exception as exc:  # the library raises several types for bad URLs
            CONFIG_ERRORS.append(f"DATABASE_URL is not a valid database URL ({exc}).")
            config = sqlite_default
        if config.get("ENGINE") not in (
            "django.db.backends.sqlite3",
            "django.db.backends.postgresql",
        ):
            CONFIG_ERRORS.append(
                f"DATABASE_URL must be sqlite:// or postgres://, got {url.split(':')[0]!r}."
            )
            config = sqlite_default
    else:
        config = sqlite_default
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        # A file, not :memory:, so that tests can share the database across threads
        # and processes the way the sampler and the web server do.
        config["TEST"] = {"NAME": str(DATA_DIR / "test-ptracker.sqlite3")}
    return config


DATABASES = {"default": database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Django ----------------------------------------------------------------------
# No "daphne" app: it only makes `runserver` serve websockets, and it loads Twisted
# (~28 MiB) into every process that sets Django up. `ptracker serve` runs Daphne.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_q",
    "monitoring",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ptracker.urls"
ASGI_APPLICATION = "ptracker.asgi.application"

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
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# Third-party front-end code comes from npm (package.json); only its dist folders are served.
NPM_ASSETS = {
    "vendor/chart.js": "chart.js/dist",
    "vendor/chartjs-adapter-date-fns": "chartjs-adapter-date-fns/dist",
    "vendor/chartjs-plugin-zoom": "chartjs-plugin-zoom/dist",
    "vendor/hammerjs": "hammerjs",
    "vendor/swagger-ui-dist": "swagger-ui-dist",
}
STATICFILES_DIRS = [BASE_DIR / "static"] + [
    (prefix, BASE_DIR / "node_modules" / path)
    for prefix, path in NPM_ASSETS.items()
    if (BASE_DIR / "node_modules" / path).is_dir()
]
STATIC_ROOT = DATA_DIR / "static"  # for `collectstatic` behind another web server
# Serve straight from the finders: no collectstatic step for a one-command install.
WHITENOISE_USE_FINDERS = True

CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [PTRACKER_REDIS_URL]},
        }
        if PTRACKER_REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# --- Background work (django-q2) ------------------------------------------------------
# Used with PTRACKER_REDIS_URL (without it the web process runs this work in threads:
# monitoring.background), or by a `qcluster` started by hand.
Q_CLUSTER = {
    "name": "ptracker",
    # One worker holds the sampler loop; the others run rollups, pruning and the
    # minute check that keeps the sampler alive.
    "workers": envint("PTRACKER_WORKERS", 2, 2, 64),
    "recycle": 500,
    # A sampler shift must end well before this, or the guard kills the worker.
    "timeout": max(600, PTRACKER_SAMPLER_SHIFT * 2),
    "retry": max(720, PTRACKER_SAMPLER_SHIFT * 2 + 120),
    "max_attempts": 1,
    "catch_up": False,  # after downtime, run each schedule once, not once per missed minute
    "save_limit": 200,
    "label": "Background tasks",
    "orm": "default",
    # The ORM broker's pusher reads the queue table every `poll` seconds when it is
    # empty; Redis blocks instead. The guard checks the cluster's processes and saves
    # its status (which expires after 3 s) every `guard_cycle` seconds.
    "poll": 1.0,
    "guard_cycle": 2,
}
if PTRACKER_REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = PTRACKER_REDIS_URL

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "monitoring.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "monitoring.api.auth.ReadOnlyTokens",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "URL_FORMAT_OVERRIDE": None,  # ?format= is the export format (csv, json, jsonl)
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ptracker API",
    "DESCRIPTION": "History and live state of hosts, GPUs and processes.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads Swagger UI from our static files (npm), never from a CDN.
    "SWAGGER_UI_DIST": "/static/vendor/swagger-ui-dist",
    "SWAGGER_UI_FAVICON_HREF": "/static/vendor/swagger-ui-dist/favicon-32x32.png",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "ptracker": {"handlers": ["console"], "level": env("PTRACKER_LOG_LEVEL", "INFO")},
        "monitoring": {"handlers": ["console"], "level": env("PTRACKER_LOG_LEVEL", "INFO")},
        "django_q": {"handlers": ["console"], "level": "WARNING"},
    },
}
