"""Jobsite settings, read from the environment.

Every setting has a default that works on a laptop with SQLite; production
overrides them through environment variables (see docs/operations.md,
"Configuration"). The project's `.env` file, if there is one, is read first.
"""

import base64
import hashlib
import os
import re
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
import dj_email_url
from celery.schedules import crontab
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv
from kombu import Exchange, Queue

from jobs.core import command_allowlist, secrets

BASE_DIR = Path(__file__).resolve().parent.parent

# `make run` writes SECRET_KEY and FLOWER_BASIC_AUTH to .env; reading it here
# lets every process and every `manage.py` command find them, in any shell.
# Variables already set in the environment win over the file. JOBS_ENV_FILE
# names another file; set to empty, no file is read (the tests do so).
_env_file = os.environ.get("JOBS_ENV_FILE", str(BASE_DIR / ".env"))
if "JOBS_ENV_FILE" in os.environ and _env_file and not Path(_env_file).is_file():
    raise ImproperlyConfigured(f"JOBS_ENV_FILE={_env_file!r}: no such file (set it to empty to read none)")
if _env_file:
    load_dotenv(_env_file, override=False)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: must be a whole number") from None


def csp_hash(source: str) -> str:
    """A Content-Security-Policy source allowing this inline script or style."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()}'"


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: must be a number of seconds, e.g. 1.5") from None


DEBUG = env_bool("DEBUG")
# Always from the environment, DEBUG or not: a key written here would be public,
# and anyone could sign sessions with it. `make run` writes a random one to .env;
# the tests' settings set their own.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: export SECRET_KEY=<a long random string> "
        "(make run writes one to .env; DEBUG=1 does not replace it)"
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
    "django_celery_beat",
    "django_celery_results",
    "axes",
    "csp",
    "simple_history",  # revisions of job types and schedules
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who made a change and through which path, for its revision.
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "jobsite.urls"
WSGI_APPLICATION = "jobsite.wsgi.application"

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

# --- Database -------------------------------------------------------------
# Connections are kept for a minute (CONN_MAX_AGE) and checked before reuse;
# workers keep theirs from task to task too (CELERY_DB_REUSE_MAX below).
# SQLite by default. Web, worker and beat write to the same file at once, so:
# WAL lets readers and one writer work together, BEGIN IMMEDIATE takes the write
# lock at the start of a transaction (a deferred one that later upgrades can fail
# at once with "database is locked", whatever the timeout), and the busy timeout
# makes a writer wait its turn instead of failing.
SQLITE_PATH = Path(os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3"))
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}", conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _sqlite_name = Path(DATABASES["default"]["NAME"])
    DATABASES["default"].update(
        OPTIONS={
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # Workers started by the tests open the test database by path, so it
        # must be a file, never SQLite's in-memory default.
        TEST={"NAME": str(_sqlite_name.with_name(_sqlite_name.stem + "_test.sqlite3"))},
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/monitor/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Files that browsers ask for at the site's root (/favicon.ico), served by WhiteNoise.
WHITENOISE_ROOT = BASE_DIR / "jobsite" / "root"
# Serve static files straight from the apps, so `make dev` and the tests need
# no collectstatic; `make run` and the Docker image collect them and say so.
WHITENOISE_USE_FINDERS = not env_bool("STATIC_COLLECTED")
if WHITENOISE_USE_FINDERS:
    # Without collectstatic there is no STATIC_ROOT, which is expected here.
    warnings.filterwarnings("ignore", message="No directory at: .*staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if WHITENOISE_USE_FINDERS
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
X_FRAME_OPTIONS = "SAMEORIGIN"

# --- Security headers and logins (docs/security.md) ---------------------------
# HSTS: once the site is served over TLS (BEHIND_TLS_PROXY or SECURE_COOKIES),
# browsers are told to use nothing but HTTPS for it for SECURE_HSTS_SECONDS
# (a year; 0: off). Django sends it on HTTPS responses only.
_tls = env_bool("BEHIND_TLS_PROXY") or env_bool("SECURE_COOKIES")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _tls else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
# Content-Security-Policy (django-csp): scripts, styles, images and fonts from
# this site only, no inline script or style without the page's nonce, no
# plugins, forms that post here only, framed by this site only. The style
# attributes that DRF's browsable API and login page write are allowed by their
# hashes; Flower's pages, proxied, get an addition of their own (jobs/monitor/flower.py).
_DRF_STYLE_ATTRIBUTES = [
    "float: right; margin-right: 10px",
    "margin-top: 30px",
    "width: 320px; margin-left: auto; margin-right: auto",
    "margin: 0 0 20px;",
    "border: none",
]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.NONCE, csp.UNSAFE_HASHES, *map(csp_hash, _DRF_STYLE_ATTRIBUTES)],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF, "data:"],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.SELF],
    }
}
# Log-in throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for
# one username from one address, that pair is refused for AXES_COOLOFF_MINUTES
# (a 429 page saying so), at the pages', the admin's and the API's login alike.
# Only failures count, and a success resets them. Behind a proxy the address is
# the proxy's, so it is the username that is locked. A superuser unlocks early
# with `manage.py axes_reset_username USER`, or in the admin.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# --- Email ----------------------------------------------------------------
EMAIL_URL = os.environ.get("EMAIL_URL", "console:")
_email = dj_email_url.parse(EMAIL_URL)
if "EMAIL_BACKEND" not in _email:
    # dj-email-url ignores schemes it does not know (e.g. "smtp+tls"), which
    # would silently send with Django's default: plain SMTP to localhost.
    raise ImproperlyConfigured(
        f"EMAIL_URL scheme {EMAIL_URL.split(':', 1)[0]!r} is not known: use smtp://, submission:// (STARTTLS), "
        "smtp://...?ssl=1 (TLS), console: or dummy:"
    )
vars().update(_email)
# Without a timeout a stuck SMTP server would hold a notification worker forever.
EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"] or 30
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "jobsite@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Links in notifications point here: the address people use to reach Jobsite.
SITE_URL = os.environ.get("SITE_URL", "http://localhost:8000").rstrip("/")

# --- Celery ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Broker connections kept open for reuse (Celery's default, 10). Flower runs with 0
# (Procfile, docker/compose.yml): each of its inspections opens a connection of its
# own, since a pooled one that a Redis restart left dead failed the next inspection
# made through it ("Unable to get stats" on Flower's worker page).
CELERY_BROKER_POOL_LIMIT = env_int("CELERY_BROKER_POOL_LIMIT", 10)
# A task whose worker vanished (killed, machine lost) is handed out again once
# it has been unacknowledged for `visibility_timeout`; workers look for such
# tasks every fifth of it (at most every 10 s; kombu's default is every 100 s).
_visibility_timeout = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "visibility_timeout": _visibility_timeout,
    "unacked_restore_interval": max(1, min(10, _visibility_timeout // 5)),
    "unacked_restore_throttle": 1,
}
# A trigger must answer quickly when Redis is down (the run stays `pending`),
# not hang for Celery's default minute of publish retries.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# django-celery-results' database backend, with results and tracebacks cut like
# the runs' own (JOBS_RESULT_MAX_BYTES, JOBS_ERROR_MAX_CHARS), and a run's success
# recorded in the same transaction as its TaskResult row (one commit, not two).
CELERY_RESULT_BACKEND = "jobs.worker.result_backend:RunResultBackend"
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("JOBS_DEFAULT_QUEUE", "celery")
# A job task is acknowledged only once it has ended, and given back to the
# queue when its worker dies, so a run is never lost with its worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The Run row records the start; a STARTED TaskResult row would double the write.
CELERY_TASK_TRACK_STARTED = False
# Celery closes a worker's database connection before and after every task
# (Django's CONN_MAX_AGE is not consulted), so each task would open a new one:
# a fresh PostgreSQL backend, with cold caches, per task. With this set, Celery
# closes it only every this many tasks, and Jobsite checks it around each task
# the way Django does around a request (jobs/worker/connections.py): closed once older
# than CONN_MAX_AGE, or when its health check fails.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Workers send task events (a Redis PUBLISH per task state change) for Flower's
# task list and task pages; Jobsite's own pages read the database. Publishing
# them took about 40 % of a worker's main process: off, throughput rose by 35 to
# 60 % (docs/operations.md, "Task events"). Flower reads this too
# (jobsite/flowerconfig.py), else it would turn them back on. No "task-sent"
# events: they would double the broker round trips of every publish.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", True)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Jobsite's own work (the dispatcher) has a queue of its own, so a flood of job
# runs never delays a schedule's fire. Listing both queues makes a plain
# `celery worker` consume both; `make run` adds a worker for `jobsite` alone.
JOBS_DISPATCH_QUEUE = "jobsite"
if CELERY_TASK_DEFAULT_QUEUE == JOBS_DISPATCH_QUEUE:
    raise ImproperlyConfigured(
        f"JOBS_DEFAULT_QUEUE={CELERY_TASK_DEFAULT_QUEUE!r} is Jobsite's own queue (the dispatcher's): "
        "name another queue for job runs, e.g. 'celery'"
    )
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name) for name in (CELERY_TASK_DEFAULT_QUEUE, JOBS_DISPATCH_QUEUE)
]
CELERY_TASK_ROUTES = {"jobsite.dispatch": {"queue": JOBS_DISPATCH_QUEUE}}
# Beat is the clock: every second it sends one message that fires every due
# schedule and scheduled run (jobs/schedules/dispatcher.py). DatabaseScheduler stores this
# entry as a PeriodicTask, visible in the admin. A message older than a few
# seconds (the dispatcher was down) is dropped: the next one does its work.
JOBS_DISPATCH_INTERVAL_SECONDS = float(os.environ.get("JOBS_DISPATCH_INTERVAL_SECONDS", "1"))
CELERY_BEAT_SCHEDULE = {
    "jobsite: fire due schedules and scheduled runs": {
        "task": "jobsite.dispatch",
        "schedule": JOBS_DISPATCH_INTERVAL_SECONDS,
        "options": {"queue": JOBS_DISPATCH_QUEUE, "expire_seconds": 10},
    }
}
# The dispatcher creates a schedule tick's run this long before the tick, so
# that at the tick it only has to release it (jobs/schedules/dispatcher.py).
JOBS_SCHEDULE_PLAN_AHEAD_SECONDS = env_int("JOBS_SCHEDULE_PLAN_AHEAD_SECONDS", 30)
JOBS_TASK_MODULES = env_list("JOBS_TASK_MODULES")
CELERY_IMPORTS = ["jobs.builtin", *JOBS_TASK_MODULES]

# --- Jobs -----------------------------------------------------------------
# Hosts (names, addresses or CIDR networks) that `http` job types may reach even
# though they are loopback, private or link-local.
JOBS_HTTP_ALLOWED_HOSTS = env_list("JOBS_HTTP_ALLOWED_HOSTS")
# The argvs `command` job types may run: entries separated by commas, each the
# words an argv must start with (quoted as in a shell). A shell, an interpreter
# or another launcher allows only its whole entry, unless
# JOBS_COMMAND_ALLOW_LAUNCHERS is on (jobs/core/commands.py). Empty: the kind is off.
JOBS_COMMAND_ALLOW_LAUNCHERS = env_bool("JOBS_COMMAND_ALLOW_LAUNCHERS")
try:
    JOBS_COMMAND_ALLOWLIST = command_allowlist.parse_allowlist(
        os.environ.get("JOBS_COMMAND_ALLOWLIST", ""), allow_launchers=JOBS_COMMAND_ALLOW_LAUNCHERS
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"JOBS_COMMAND_ALLOWLIST: {exc}") from None
# Fernet keys that encrypt secrets (jobs/core/secrets.py), comma-separated: the
# first encrypts, all decrypt. Empty: secrets cannot be created or used.
try:
    JOBS_SECRETS_KEYS = secrets.parse_keys(os.environ.get("JOBS_SECRETS_KEYS", ""))
except ValueError as exc:
    raise ImproperlyConfigured(f"JOBS_SECRETS_KEYS: {exc}") from None
JOBS_HTTP_MAX_BODY_BYTES = env_int("JOBS_HTTP_MAX_BODY_BYTES", 64 * 1024)
JOBS_HTTP_MAX_REDIRECTS = env_int("JOBS_HTTP_MAX_REDIRECTS", 5)
JOBS_COMMAND_OUTPUT_TAIL_BYTES = env_int("JOBS_COMMAND_OUTPUT_TAIL_BYTES", 16 * 1024)
JOBS_DEFAULT_TIMEOUT_SECONDS = env_int("JOBS_DEFAULT_TIMEOUT_SECONDS", 300)
# What a run's task logs (from this level up) and prints, and a command's
# output, kept per run: its newest lines within both limits (jobs/runs/logs.py).
JOBS_RUN_LOG_LEVEL = os.environ.get("JOBS_RUN_LOG_LEVEL", "WARNING").strip().upper() or "WARNING"
if JOBS_RUN_LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"JOBS_RUN_LOG_LEVEL={JOBS_RUN_LOG_LEVEL!r}: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
JOBS_RUN_LOG_MAX_LINES = env_int("JOBS_RUN_LOG_MAX_LINES", 1000)
JOBS_RUN_LOG_MAX_BYTES = env_int("JOBS_RUN_LOG_MAX_BYTES", 256 * 1024)
if JOBS_RUN_LOG_MAX_LINES < 0 or JOBS_RUN_LOG_MAX_BYTES < 0:
    raise ImproperlyConfigured("JOBS_RUN_LOG_MAX_LINES and JOBS_RUN_LOG_MAX_BYTES: must be 0 (keep none) or more")
# The hard time limit is this many seconds after the soft one, so a task can
# clean up after SoftTimeLimitExceeded before it is killed.
JOBS_HARD_TIMEOUT_GRACE_SECONDS = env_int("JOBS_HARD_TIMEOUT_GRACE_SECONDS", 30)
JOBS_RETRY_BACKOFF_MAX_SECONDS = env_int("JOBS_RETRY_BACKOFF_MAX_SECONDS", 600)

# --- Reliability --------------------------------------------------------------
# A run that is still `pending` this long after it became so (its publish
# failed: broker down) is published by the sweeper in the dispatcher. Longer
# than a publish can take, so that a run whose first publish is still under
# way is not published twice.
JOBS_PENDING_REPUBLISH_SECONDS = env_int("JOBS_PENDING_REPUBLISH_SECONDS", 15)
# Messages sent to Redis in one round trip when many runs are published at once
# (a bulk trigger, a dispatcher tick, a workflow's ready steps).
JOBS_PUBLISH_BATCH_SIZE = env_int("JOBS_PUBLISH_BATCH_SIZE", 500)
# A run whose task ends within this many seconds has its start written with its
# end, one write where there were two; a task still running then has its start
# written at that moment, so the pages show it running (jobs/worker/start_marks.py).
# Until then the run shows `queued`. 0: every start is written as its task starts.
JOBS_START_MARK_DELAY_SECONDS = env_float("JOBS_START_MARK_DELAY_SECONDS", 0.5)
if JOBS_START_MARK_DELAY_SECONDS < 0:
    raise ImproperlyConfigured(f"JOBS_START_MARK_DELAY_SECONDS={JOBS_START_MARK_DELAY_SECONDS}: give 0 or more")
# PostgreSQL: the statements of the hot path (a run's trigger, start and end, a
# step hop) are planned once per connection, PREPAREd, where each was planned
# every time (jobs/core/statements.py). Off behind a pooler that hands one
# client's statements to several server connections (PgBouncer's transaction
# mode): their prepared statements are the server connection's.
JOBS_DB_PREPARED_STATEMENTS = env_bool("JOBS_DB_PREPARED_STATEMENTS", True)
# A run still `running` this long after its hard time limit, that no worker
# reports as active, has lost its worker: the stuck check (every
# JOBS_STUCK_CHECK_SECONDS) fails it.
JOBS_STUCK_MARGIN_SECONDS = env_int("JOBS_STUCK_MARGIN_SECONDS", 60)
JOBS_STUCK_CHECK_SECONDS = env_int("JOBS_STUCK_CHECK_SECONDS", 60)
# A run `queued` this long (or `retrying` this long past its retry time) whose
# message is neither in Redis nor with a worker is published again; the check
# runs this often (jobs/runs/lost.py).
JOBS_QUEUED_CHECK_SECONDS = env_int("JOBS_QUEUED_CHECK_SECONDS", 60)
if JOBS_QUEUED_CHECK_SECONDS < 1:
    raise ImproperlyConfigured(f"JOBS_QUEUED_CHECK_SECONDS={JOBS_QUEUED_CHECK_SECONDS}: give at least 1 second")
# A run of a job type at its max_concurrency waits `queued` and looks for a free
# slot again after this long, doubling up to the max.
JOBS_CONCURRENCY_WAIT_SECONDS = env_float("JOBS_CONCURRENCY_WAIT_SECONDS", 1.0)
JOBS_CONCURRENCY_WAIT_MAX_SECONDS = env_float("JOBS_CONCURRENCY_WAIT_MAX_SECONDS", 10.0)
CELERY_BEAT_SCHEDULE["jobsite: fail runs whose worker is gone"] = {
    "task": "jobsite.check_stuck",
    "schedule": float(JOBS_STUCK_CHECK_SECONDS),
    "options": {"queue": JOBS_DISPATCH_QUEUE, "expire_seconds": JOBS_STUCK_CHECK_SECONDS},
}
CELERY_BEAT_SCHEDULE["jobsite: publish again runs whose message is lost"] = {
    "task": "jobsite.check_lost_messages",
    "schedule": float(JOBS_QUEUED_CHECK_SECONDS),
    "options": {"queue": JOBS_DISPATCH_QUEUE, "expire_seconds": JOBS_QUEUED_CHECK_SECONDS},
}

# --- Size limits --------------------------------------------------------------
# A request body larger than this is refused (the API answers 413). Django's
# own setting, read from the environment; Django's default.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
# A run's params (with defaults applied), as JSON: larger ones are refused (400).
JOBS_PARAMS_MAX_BYTES = env_int("JOBS_PARAMS_MAX_BYTES", 64 * 1024)
# A run's result, as JSON: a larger one is stored as
# {"truncated": true, "size": N, "limit": L, "preview": "<its first L bytes>"}.
JOBS_RESULT_MAX_BYTES = env_int("JOBS_RESULT_MAX_BYTES", 256 * 1024)
# A run's error and traceback are each cut to this many characters, saying so.
JOBS_ERROR_MAX_CHARS = env_int("JOBS_ERROR_MAX_CHARS", 20_000)

# --- Limits on what people may define ------------------------------------------
# Steps in one workflow: each is a run row per workflow run, and the orchestrator
# reads them all whenever one ends.
JOBS_MAX_WORKFLOW_STEPS = env_int("JOBS_MAX_WORKFLOW_STEPS", 200)
# The shortest interval_seconds a schedule may have (a cron fires at most every minute).
JOBS_MIN_SCHEDULE_INTERVAL_SECONDS = env_int("JOBS_MIN_SCHEDULE_INTERVAL_SECONDS", 10)
# Schedules of one job type, enabled or not.
JOBS_MAX_SCHEDULES_PER_JOB_TYPE = env_int("JOBS_MAX_SCHEDULES_PER_JOB_TYPE", 1000)
# A schedule backfill creates at most this many runs (ticks) in one request, and
# releases them this many at a time when neither it, its schedule nor its job
# type says how many (jobs/schedules/backfill.py).
JOBS_BACKFILL_MAX_TICKS = env_int("JOBS_BACKFILL_MAX_TICKS", 1000)
JOBS_BACKFILL_CONCURRENCY = env_int("JOBS_BACKFILL_CONCURRENCY", 1)
# A bulk trigger (POST /api/v1/job-types/{name}/runs/bulk/) takes at most this
# many runs per request; `run_job --params-file` takes any number, and both
# insert and publish them this many at a time.
JOBS_BULK_MAX_RUNS = env_int("JOBS_BULK_MAX_RUNS", 1000)
for _name in (
    "JOBS_MAX_WORKFLOW_STEPS",
    "JOBS_MIN_SCHEDULE_INTERVAL_SECONDS",
    "JOBS_MAX_SCHEDULES_PER_JOB_TYPE",
    "JOBS_BACKFILL_MAX_TICKS",
    "JOBS_BACKFILL_CONCURRENCY",
    "JOBS_BULK_MAX_RUNS",
):
    if vars()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}={vars()[_name]}: must be at least 1")

# --- Notifications ----------------------------------------------------------
# A notification that cannot be delivered (SMTP or webhook down) is tried again
# after JOBS_NOTIFY_RETRY_BACKOFF_SECONDS, doubling up to the max, until
# JOBS_NOTIFY_MAX_ATTEMPTS attempts have been made; then its failure is recorded.
JOBS_NOTIFY_MAX_ATTEMPTS = env_int("JOBS_NOTIFY_MAX_ATTEMPTS", 8)
JOBS_NOTIFY_RETRY_BACKOFF_SECONDS = env_int("JOBS_NOTIFY_RETRY_BACKOFF_SECONDS", 30)
JOBS_NOTIFY_RETRY_BACKOFF_MAX_SECONDS = env_int("JOBS_NOTIFY_RETRY_BACKOFF_MAX_SECONDS", 1800)
JOBS_WEBHOOK_TIMEOUT_SECONDS = env_int("JOBS_WEBHOOK_TIMEOUT_SECONDS", 10)
# Characters of a run's params, result and error quoted in a notification.
JOBS_NOTIFY_EXCERPT_CHARS = env_int("JOBS_NOTIFY_EXCERPT_CHARS", 2000)
# The last lines of a failed run's log in its email and webhook.
JOBS_NOTIFY_LOG_LINES = env_int("JOBS_NOTIFY_LOG_LINES", 20)
# One attempt holds its run's notification this long; a worker that died while
# holding it is replaced after that. Longer than an SMTP plus a webhook timeout.
JOBS_NOTIFY_LEASE_SECONDS = max(
    env_int("JOBS_NOTIFY_LEASE_SECONDS", 120), EMAIL_TIMEOUT + JOBS_WEBHOOK_TIMEOUT_SECONDS + 20
)
# Backstop for a notification whose task was lost (broker down when the run
# ended, or a retry that never came back): it is sent late, not never.
CELERY_BEAT_SCHEDULE["jobsite: send notifications whose task was lost"] = {
    "task": "jobsite.notify_sweep",
    "schedule": 60.0,
}

# --- Retention ----------------------------------------------------------------
# Runs that ended more than this many days ago are deleted, with their workflow
# steps and task results, by `manage.py purge_runs`, which beat also sends every
# day at 03:30 (CELERY_TIMEZONE). Unset: 90 days; 0 or empty: kept forever.
_retention = os.environ.get("JOBS_RUN_RETENTION_DAYS")
JOBS_RUN_RETENTION_DAYS = (
    0 if _retention is not None and _retention.strip() == "" else env_int("JOBS_RUN_RETENTION_DAYS", 90)
)
if JOBS_RUN_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(
        f"JOBS_RUN_RETENTION_DAYS={JOBS_RUN_RETENTION_DAYS}: give a number of days, or 0 to keep runs forever"
    )
if JOBS_RUN_RETENTION_DAYS:
    CELERY_BEAT_SCHEDULE["jobsite: delete old runs"] = {
        "task": "jobsite.purge_runs",
        "schedule": crontab(minute=30, hour=3),
    }

# --- Monitoring pages and Flower ---------------------------------------------
# Flower listens on loopback with url_prefix=flower and its own basic-auth
# credentials; the web process proxies /flower/ to it for staff users.
FLOWER_URL = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555/flower")
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")  # "user:password", as given to flower --basic_auth
# Seconds a page waits for workers to answer `celery inspect`, and for the
# broker to accept a connection: a page must render when neither answers.
MONITOR_INSPECT_TIMEOUT = env_float("MONITOR_INSPECT_TIMEOUT", 1.0)
# /healthz, open to anyone, checks the broker and pings the workers at most this
# often (seconds, per web process); callers in between get the last answer.
HEALTHZ_CACHE_SECONDS = env_float("HEALTHZ_CACHE_SECONDS", 5.0)
# GET /metrics (Prometheus) answers staff sessions, and a scraper that sends
# `Authorization: Bearer <this>`. Empty: staff sessions only.
JOBS_METRICS_TOKEN = os.environ.get("JOBS_METRICS_TOKEN", "")
if JOBS_METRICS_TOKEN and len(JOBS_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured(
        f"JOBS_METRICS_TOKEN is {len(JOBS_METRICS_TOKEN)} characters: give at least 32 "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), or leave it empty"
    )


# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header turns "no credentials" into 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["jobs.api.permissions.ModelPermissions"],
    # JSON bodies only (the browsable API keeps its raw-data form), within
    # DATA_UPLOAD_MAX_MEMORY_SIZE.
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "jobs.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "jobs.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
}
# Trigger URLs (jobs/runs/trigger_urls.py): each URL takes at most this many
# requests per second, minute, hour or day ("60/m"), counted in Redis (the
# "throttle" cache below) so that every web process counts towards the same limit.
JOBS_TRIGGER_URL_RATE = os.environ.get("JOBS_TRIGGER_URL_RATE", "60/m").strip()
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", JOBS_TRIGGER_URL_RATE):
    raise ImproperlyConfigured(
        f"JOBS_TRIGGER_URL_RATE={JOBS_TRIGGER_URL_RATE!r}: give requests per period, e.g. 60/m (periods: s, m, h, d)"
    )
# The default cache is each process's own memory (Django's default); rate limits
# need one count for all web processes, so theirs live in Redis, with short
# timeouts: when Redis does not answer, trigger URLs are not rate-limited.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "jobsite-throttle",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jobsite API",
    "DESCRIPTION": "Define job types, run them on Celery workers, and follow their runs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two choice sets are called `status`: a run's and a notification's.
    "ENUM_NAME_OVERRIDES": {"RunStatusEnum": "jobs.models.Run.Status"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every start and every successful login at INFO; lockouts at WARNING.
    # httpx logs every request's full URL at INFO, with the credentials and secrets in it.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
