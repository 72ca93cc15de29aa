"""ptracker settings: one file, driven by environment variables.

Every value has a default that runs with no environment at all (SQLite in the data
directory). Bad values do not raise here, where they would end in a traceback:
they are collected in CONFIG_ERRORS and reported by a system check
(monitoring.checks), which stops `ptracker run`, `migrate` and `qcluster` with a
clear message.
"""

import ipaddress
import os
import re
import secrets
import socket
import urllib.parse
from datetime import timedelta
from pathlib import Path

import dj_database_url
import psutil
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

from monitoring.params import MAX_ID
from ptracker.assets import NPM_ASSETS

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


# --- Who may reach ptracker: host names, origins, HTTPS, content policy ---------------
# Only names ptracker was told about, or can see it is reached by, are served: a foreign
# Host header (DNS rebinding: a name of the attacker's resolving to 127.0.0.1) gets
# Django's 400, and the websocket takes only pages of ptracker's own origin
# (ptracker.security.SameOriginOnly).
HOST_NAME = re.compile(r"^(\.?[a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\])$")
DEFAULT_PORTS = {"http": 80, "https": 443}


def host_name(value: str) -> str | None:
    """value as an ALLOWED_HOSTS entry (IPv6 in brackets), None when it is no host name."""
    value = value.strip().lower()
    try:
        if ipaddress.ip_address(value).version == 6:
            return f"[{value}]"
    except ValueError:
        pass
    return value if HOST_NAME.match(value) else None


def host_list(name: str) -> list[str]:
    hosts = []
    for part in filter(None, (p.strip() for p in env(name).split(","))):
        host = "*" if part == "*" else host_name(part)
        if host is None:
            CONFIG_ERRORS.append(
                f"{name}: {part!r} is not a host name or address (mon.example.com, "
                f"10.0.0.5, [::1], .example.com for every subdomain); no scheme, port or path."
            )
        else:
            hosts.append(host)
    return hosts


def machine_hosts(bind: str) -> list[str]:
    """What a browser may call this machine when ptracker listens on `bind`."""
    names = [bind]
    if bind in ("0.0.0.0", "::"):
        # Every interface: the machine's name and each of its addresses (link-local
        # ones need a zone id, which no browser puts in a Host header).
        names = [socket.gethostname()] + [
            address.address
            for entries in psutil.net_if_addrs().values()
            for address in entries
            if address.family in (socket.AF_INET, socket.AF_INET6) and "%" not in address.address
        ]
    hosts = ["localhost", "127.0.0.1", "[::1]"] + [host_name(n) for n in names]
    return list(dict.fromkeys(h for h in hosts if h))


def public_url() -> tuple[str, str]:
    """PTRACKER_PUBLIC_URL as (host, origin); empty strings when unset or bad."""
    value = env("PTRACKER_PUBLIC_URL")
    if not value:
        return "", ""
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = host_name(parts.hostname) if parts.hostname else None
    if (
        parts.scheme not in DEFAULT_PORTS
        or host is None
        or host.startswith(".")
        or port == -1
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        CONFIG_ERRORS.append(
            f"PTRACKER_PUBLIC_URL must be the address the dashboard is opened at, like "
            f"https://mon.example.com or http://10.0.0.5:8000 (no path), got {value!r}."
        )
        return "", ""
    netloc = host if port in (None, DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
    return host, f"{parts.scheme}://{netloc}"


# `ptracker run --bind` sets PTRACKER_BIND for itself and its children (ptracker.cli).
PTRACKER_BIND = env("PTRACKER_BIND") or "127.0.0.1"
PUBLIC_HOST, PTRACKER_PUBLIC_ORIGIN = public_url()
# ALLOWED_HOSTS is the old name of PTRACKER_ALLOWED_HOSTS, still read.
ALLOWED_HOSTS = host_list(
    "PTRACKER_ALLOWED_HOSTS" if env("PTRACKER_ALLOWED_HOSTS") else "ALLOWED_HOSTS"
) or machine_hosts(PTRACKER_BIND)
if PUBLIC_HOST and PUBLIC_HOST not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(PUBLIC_HOST)
# Links in alert messages leave with no request to take a host from: the public
# address when set, else where `ptracker run` listens (PTRACKER_BIND, PTRACKER_PORT).
PTRACKER_PORT = envint("PTRACKER_PORT", 8000, 1, 65535)


def listening_url(bind: str, port: int) -> str:
    name = socket.gethostname() if bind in ("0.0.0.0", "::", "") else bind
    return f"http://{f'[{name}]' if ':' in name else name}:{port}"


PTRACKER_LINK_URL = PTRACKER_PUBLIC_ORIGIN or listening_url(PTRACKER_BIND, PTRACKER_PORT)
# Origins other than a page's own that may post forms and open the websocket: the public
# address, when a proxy in front does not pass the Host header on.
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]
if PTRACKER_PUBLIC_ORIGIN:
    CSRF_TRUSTED_ORIGINS.append(PTRACKER_PUBLIC_ORIGIN)

# HTTPS means behind a proxy that ends TLS and says so in X-Forwarded-Proto (ptracker
# itself speaks plain HTTP). Explicit PTRACKER_HTTPS=0 wins over an https:// public
# URL, for a proxy that cannot set that header (every request would be redirected).
PTRACKER_HTTPS = envbool("PTRACKER_HTTPS", PTRACKER_PUBLIC_ORIGIN.startswith("https://"))
if PTRACKER_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = envint("PTRACKER_HSTS_SECONDS", 365 * 86400, 0, 2 * 365 * 86400)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # HSTS preload is a promise for the whole registered domain (and anyone may submit
    # it to the browsers' list once the header says so): not ptracker's to make.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Content-Security-Policy (django-csp): scripts only from our own files, or inline with
# the response's nonce (the API docs' start-up, the debug report). Inline styles stay
# allowed: the pages set bar widths and indents in style attributes, and a style cannot
# run code. ptracker.security.CSPMiddleware adds the page's own ws:// or wss:// address
# to connect-src, which older browsers do not count as 'self'.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# /api/schema/ and /api/docs/ need a session or a token unless this is on.
PTRACKER_PUBLIC_API_DOCS = envbool("PTRACKER_PUBLIC_API_DOCS")

# --- ptracker's own settings -------------------------------------------------
# Seconds between two samples of this machine.
PTRACKER_SAMPLE_INTERVAL = envint("PTRACKER_SAMPLE_INTERVAL", 5, 1, 60, " seconds")
# Processes stored per sample: the top N by CPU and the top N by memory (plus watched ones).
PTRACKER_TOP_N = envint("PTRACKER_TOP_N", 25, 1, 1000)
# Processes kept per 1-minute and 1-hour rollup bucket: the top N by average CPU and the
# top N by peak memory (plus GPU users and watched ones).
PTRACKER_ROLLUP_TOP_N = envint("PTRACKER_ROLLUP_TOP_N", 10, 1, 1000)
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
            # No persistent connections: under ASGI each request runs in a thread of its
            # own, and a connection kept for a thread that is gone stays open on the server
            # until collected (500 agents exhausted PostgreSQL's 100 connections). The
            # long-lived threads (sampler, ingest writer, schedules) keep theirs anyway.
            config = dj_database_url.parse(url, conn_max_age=0)
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
        config["ENGINE"] = "ptracker.db.sqlite3"  # Django's, its writers taking turns
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
    "jobs",
    "appmetrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ptracker.security.CSPMiddleware",
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
        "DIRS": [BASE_DIR / "ptracker" / "templates"],
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
# Third-party front-end code comes from npm (ptracker.assets): a checkout serves it from
# node_modules; a wheel carries copies in ptracker/static/vendor/.
STATICFILES_DIRS = [BASE_DIR / "ptracker" / "static"] + [
    (f"vendor/{package}", BASE_DIR / "node_modules" / package / folder)
    for package, (folder, _files) in NPM_ASSETS.items()
    if (BASE_DIR / "node_modules" / package / folder).is_dir()
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
    # One worker holds the sampler loop, one the puller while a host is pulled; the
    # others run rollups, pruning and the minute checks that keep those loops alive.
    "workers": envint("PTRACKER_WORKERS", 3, 2, 64),
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
        "monitoring.api.auth.JobTokens",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "monitoring.api.errors.exception_handler",
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
    "PREPROCESSING_HOOKS": ["monitoring.api.schema.without_switched_off"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "monitoring.api.schema.empty_means_absent",
    ],
    "ENUM_NAME_OVERRIDES": {"HealthStatusEnum": "jobs.monitor.HEALTH_STATES"},
    # <id:…> in URLs (monitoring.params.IdConverter)
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
    },
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

# --- Sign-in throttling, permissions, redaction --------------------------------------
# django-axes counts failed sign-ins (/login/, /admin/login/: whatever calls
# authenticate() with a request) per username and per address, each on its own: five
# failures lock that account, and that address, for 15 minutes, even with the right
# password. API tokens never call authenticate(), so they are not counted. A superuser
# clears a lockout in the admin (Axes › Access attempts: delete the rows) or with
# `ptracker manage axes_reset_username <name>`.
INSTALLED_APPS += ["axes"]
# Axes last of those that do something, as it requires; then the one that makes Django
# run the chain in one thread (ptracker.middleware).
MIDDLEWARE += ["axes.middleware.AxesMiddleware", "ptracker.middleware.SyncChain"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out attempt
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "monitoring.views.locked_out"
# A success would delete every failure from its address too, guesses at other
# accounts included: failures only expire.
AXES_RESET_ON_SUCCESS = False


def patterns(name: str) -> list[str]:
    """Regular expressions separated by whitespace (write a space inside one as \\s)."""
    result = []
    for pattern in env(name).split():
        try:
            re.compile(pattern)
        except re.error as exc:
            CONFIG_ERRORS.append(f"{name}: {pattern!r} is not a regular expression ({exc}).")
        else:
            result.append(pattern)
    return result


# Command-line secrets to mask for users without monitoring.view_full_cmdline, beside
# the defaults in monitoring/redaction.py: the first group, else the whole match.
PTRACKER_REDACT_PATTERNS = patterns("PTRACKER_REDACT_PATTERNS")
