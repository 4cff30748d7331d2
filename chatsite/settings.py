"""All of the site's settings, read from the environment in this one place.

Every variable is listed, with its default, in the README's configuration table.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# `make run` writes the generated keys to .env; ENV_FILE="" skips reading any file (used by the
# tests that check how start-up reacts to a missing key).
_env_file = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    # Variables already in the environment win over the file.
    environ.Env.read_env(_env_file, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _required(name: str, hint: str) -> str:
    value = env.str(name, default="")
    if not value and not DEBUG:
        raise ImproperlyConfigured(
            f"{name} is not set: {hint} (or run `make run`, which writes one to .env)."
        )
    return value


SECRET_KEY = _required(
    "SECRET_KEY", "set it to a long random string, e.g. the output of `openssl rand -hex 32`"
) or ("insecure-debug-only-" + "x" * 40)

# Fernet keys, comma-separated: the first encrypts, all of them decrypt (see
# `manage.py rotate_encryption_keys`). In DEBUG without keys, provider tokens cannot be saved.
FIELD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required(
        "FIELD_ENCRYPTION_KEYS",
        "set it to one or more comma-separated Fernet keys, e.g. the output of `python -c "
        "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`",
    ).split(",")
    if key.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=8000)
# Behind a reverse proxy: take the client's address (and scheme) from the proxy's
# X-Forwarded-For / X-Forwarded-Proto, which Daphne reads from every peer. Only with a proxy that
# overwrites them and a server the proxy alone can reach, or any client could name its address
# (and escape the per-address sign-in limit).
PROXY_HEADERS = env.bool("PROXY_HEADERS", default=False)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "chatsite",
    "providers",
    "conversations",
    "conversations.presets",
    "conversations.usage",
    "conversations.attachments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Pages compressed on the way out (static files come precompressed from WhiteNoise). Django
    # pads compressed bodies with random bytes against BREACH, and masks the CSRF token.
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as axes asks: it turns a lock-out its backend detected into the page that says so.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

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
                "django.template.context_processors.csp",
                "conversations.context_processors.theme",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Set but empty (`DATABASE_URL=` in .env) means the default too: it used to stop start-up with
# a bare KeyError from deep in the settings.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'chat.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if "ENGINE" not in DATABASES["default"]:
    raise ImproperlyConfigured(
        "DATABASE_URL is not a database URL this site knows: use sqlite:///path/to/file.sqlite3 "
        "or postgres://user:password@host:5432/name."
    )
# Threads that run the sockets' and the chat engine's database calls (chatsite.db), each keeping
# its connection; on SQLite one more thread runs the writes, which SQLite serialises anyway.
DATABASE_THREADS = env.int("DATABASE_THREADS", default=8)
# PostgreSQL: psycopg's pool, shared by those threads and the HTTP views' threads.
DATABASE_POOL_SIZE = env.int("DATABASE_POOL_SIZE", default=DATABASE_THREADS + 8)
if DATABASE_THREADS < 1:
    raise ImproperlyConfigured("DATABASE_THREADS must be at least 1.")
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one writer writes; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers queue on the busy timeout instead of failing with "database is locked"
    # when a read transaction tries to upgrade.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that server processes started by the tests share the test database;
    # the process id keeps parallel test runs on one checkout apart.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    # Opening a connection (and running the PRAGMAs above) cost a quarter of every database call:
    # connections stay open. The database threads are long-lived, so each keeps one (a
    # connection never leaves the thread that opened it); an HTTP view's thread ends with its
    # request, and its connection with it.
    _db["CONN_MAX_AGE"] = None
    _db["CONN_HEALTH_CHECKS"] = True
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections leak under ASGI (each request may run on a new thread), so connections
    # come from psycopg's pool and are returned after every call. The database threads hold at
    # most DATABASE_THREADS of them at once; the pool must be larger, so views always get one.
    if DATABASE_POOL_SIZE <= DATABASE_THREADS:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_SIZE ({DATABASE_POOL_SIZE}) must be larger than DATABASE_THREADS "
            f"({DATABASE_THREADS}): the HTTP views need connections too."
        )
    _db["CONN_MAX_AGE"] = 0
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": 10,
    }
DATABASES["default"] = _db

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer and Redis ------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Seconds a Redis read may take; longer than any blocking read we (or channels-redis) issue.
REDIS_SOCKET_TIMEOUT = 30
# How long a Redis command waits for a free connection of its pool (the event log's and the
# channel layer's) before failing; a wait is what a full pool does instead of refusing at once.
REDIS_POOL_WAIT_SECONDS = 10
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis, with a pool that waits when all its connections are busy.
            "BACKEND": "chatsite.channel_layer.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same length as
            # channels-redis's blocking pop: an idle socket's receive would fail (and take the
            # consumer with it) whenever the pop ran to its end. Reads get room to spare.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "max_connections": env.int("CHAT_REDIS_CHANNEL_CONNECTIONS", default=50),
                    }
                ]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "chatsite.channel_layer.InMemoryChannelLayer"}}

# --- Accounts ---------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (chatsite.throttling, on django-axes): failures are counted per client address
# and per username; at LOGIN_FAILURE_LIMIT that address or username is locked out for
# LOGIN_COOLOFF_SECONDS, doubled for every further failure, up to LOGIN_MAX_COOLOFF_SECONDS.
# Admins see and clear lock-outs in the admin ("Access attempts").
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_SECONDS = env.int("LOGIN_COOLOFF_SECONDS", default=60)
LOGIN_MAX_COOLOFF_SECONDS = env.int("LOGIN_MAX_COOLOFF_SECONDS", default=24 * 3600)
AUTHENTICATION_BACKENDS = [
    "chatsite.throttling.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
# Either one alone locks out: one address guessing many usernames, or many addresses guessing
# one user's password.
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_COOLOFF_TIME = "chatsite.throttling.login_cool_off"
AXES_LOCKOUT_CALLABLE = "chatsite.throttling.login_locked_out"
AXES_RESET_ON_SUCCESS = True
# The peer address only: a client-supplied X-Forwarded-For would let every guess come from a new
# "address". Behind a proxy, PROXY_HEADERS has Daphne put the proxy's header in that place.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Security headers -------------------------------------------------------------------------
# No inline scripts anywhere: model output is untrusted, so the browser must refuse to run any
# script the page itself did not load from our origin.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    # CSP3 "self" covers ws:// and wss:// to our own host, which is all the chat socket needs.
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
# WhiteNoise warns about a missing STATIC_ROOT before the first `collectstatic`.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Uploaded attachments (attachments.models). Any storage of Django's storage API works: scale mode
# with several servers needs one they share, such as an S3-compatible bucket through a storage
# package (FILE_STORAGE_BACKEND names its class; its own settings come from its documentation).
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {
        "BACKEND": env.str(
            "FILE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
        )
    },
    # `collectstatic` (run by `manage.py prepare`, hence `make run`) writes each file under a
    # name with its content's hash, plus a gzip copy; WhiteNoise serves those with a year of
    # caching and the compressed copy to browsers that accept it.
    "staticfiles": {"BACKEND": "chatsite.storage.StaticFilesStorage"},
}
# With DEBUG the pages name the unhashed files: served fresh from the source folders.
WHITENOISE_USE_FINDERS = True
# Files browsers ask for at the site's root (/favicon.ico), served before the sign-in check.
WHITENOISE_ROOT = BASE_DIR / "public"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Providers --------------------------------------------------------------------------------
# Where AuthFileMixin keeps its auth cache files when a provider is used as a library.
PROVIDERS_AUTH_DIR = Path(env.str("PROVIDERS_AUTH_DIR", default=str(VAR_DIR / "auth")))
# The local model (LlamaCpp) runs in a worker process; one that sends nothing for this long while
# it has a request (no token, or a model still loading) is killed and replaced.
LOCAL_MODEL_STALL_SECONDS = env.float("LOCAL_MODEL_STALL_SECONDS", default=120.0)
# Tests only: a signal name (such as SIGILL) the worker dies of when its first request arrives.
LOCAL_MODEL_WORKER_FAULT = env.str("LOCAL_MODEL_WORKER_FAULT", default="")
# Connections to upstreams one server process may hold at once (per proxy). Each running answer
# holds one for its whole stream, so this is also how many answers can stream at once; the next
# waits for a free connection.
PROVIDER_MAX_CONNECTIONS = env.int("PROVIDER_MAX_CONNECTIONS", default=2000)
# Idle upstream connections kept for the next answers (per process and proxy).
PROVIDER_KEEPALIVE_CONNECTIONS = env.int("PROVIDER_KEEPALIVE_CONNECTIONS", default=200)

# --- Logging ----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # At DEBUG this logger writes every SQL statement with its parameters (ciphertexts,
        # session keys, message text); held at INFO whatever LOG_LEVEL says.
        "django.db.backends": {"level": "INFO"},
        # Every sign-in and sign-out is an INFO line of axes; failures and lock-outs are warnings.
        "axes": {"level": "WARNING"},
    },
}

# --- Serving ----------------------------------------------------------------------------------
# `manage.py serve` (what `make run` starts) binds here.
BIND_ADDRESS = env.str("BIND_ADDRESS", default="127.0.0.1")
# Daphne processes `manage.py serve` runs on that one port, restarting any that dies
# (chatsite.supervisor). A process runs Python on one core at a time; more need scale mode, where
# each answer's stream reaches the other processes through Redis.
SERVER_PROCESSES = env.int("SERVER_PROCESSES", default=1)
if SERVER_PROCESSES < 1:
    raise ImproperlyConfigured("SERVER_PROCESSES must be at least 1.")
if SERVER_PROCESSES > 1 and not (REDIS_URL and _db["ENGINE"] == "django.db.backends.postgresql"):
    raise ImproperlyConfigured(
        "SERVER_PROCESSES above 1 needs scale mode: set REDIS_URL and a PostgreSQL DATABASE_URL. "
        "Without Redis an answer streams only to the sockets of the process that runs it, and "
        "SQLite admits one writer at a time across processes."
    )

# --- Tests ------------------------------------------------------------------------------------
# Set by .ci/run: a test that needs PostgreSQL, Redis or Chromium fails instead of skipping when
# the service is missing.
REQUIRE_SERVICES = env.bool("REQUIRE_SERVICES", default=False)
REQUIRE_BROWSER = env.bool("REQUIRE_BROWSER", default=False)

# --- Chat engine (conversations) ----------------------------------------------------------------
# Largest `content` (and system prompt) a user may send, in bytes of UTF-8.
CHAT_MAX_CONTENT_BYTES = env.int("CHAT_MAX_CONTENT_BYTES", default=100_000)
# Answers one user may have streaming at once; the next send gets `error` rate_limited.
CHAT_MAX_CONCURRENT_GENERATIONS = env.int("CHAT_MAX_CONCURRENT_GENERATIONS", default=3)
# At most one `message.delta` frame per answer per this many milliseconds: a token arriving longer
# than this after the last frame goes out at once, others at the end of the interval, together.
# One display refresh (60 Hz): a stream of 50 tokens/s then costs no latency at all, while a fast
# one still goes out as ~60 frames a second.
CHAT_FRAME_INTERVAL_MS = env.int("CHAT_FRAME_INTERVAL_MS", default=16)
# While the process runs late (more answers than its CPU keeps up with), the interval grows up to
# this, so frames carry several tokens each instead of falling further behind.
CHAT_FRAME_INTERVAL_MAX_MS = env.int("CHAT_FRAME_INTERVAL_MAX_MS", default=250)
# Partial answers are saved at most this often (never per token).
CHAT_CHECKPOINT_SECONDS = env.float("CHAT_CHECKPOINT_SECONDS", default=1.0)
# A `streaming` answer not saved for this long belongs to a dead process: it becomes
# `interrupted`. Running generations refresh their row well within this time.
CHAT_STALE_STREAM_SECONDS = env.float("CHAT_STALE_STREAM_SECONDS", default=30.0)
# How long the event log of a finished answer stays readable for late subscribers (Redis mode).
CHAT_STREAM_RETENTION_SECONDS = env.int("CHAT_STREAM_RETENTION_SECONDS", default=300)
# Length cap of one answer's Redis Stream (XADD MAXLEN ~); a follower that falls further behind
# gets a fresh snapshot.
CHAT_STREAM_MAXLEN = env.int("CHAT_STREAM_MAXLEN", default=10_000)
# Redis connections per server process for the event logs (scale mode): appends and other writes,
# and short reads (snapshots). Following streams takes one more connection per process, however
# many sockets follow; a command that finds its pool busy waits for a connection.
CHAT_REDIS_WRITE_CONNECTIONS = env.int("CHAT_REDIS_WRITE_CONNECTIONS", default=20)
CHAT_REDIS_READ_CONNECTIONS = env.int("CHAT_REDIS_READ_CONNECTIONS", default=10)
# How many messages of the branch go to the provider as context (newest kept).
CHAT_HISTORY_MESSAGES = env.int("CHAT_HISTORY_MESSAGES", default=100)
# The longest an answer may take, and the longest wait for its next token once it has begun:
# past either, it ends with an error (keeping its text) and frees its slot and upstream.
CHAT_MAX_ANSWER_SECONDS = env.float("CHAT_MAX_ANSWER_SECONDS", default=600.0)
CHAT_ANSWER_IDLE_SECONDS = env.float("CHAT_ANSWER_IDLE_SECONDS", default=120.0)
# An open socket checks this often that its session still signs its user in (sign-outs, password
# changes and deactivations close sockets at once; this catches sessions that expire).
CHAT_SESSION_RECHECK_SECONDS = env.float("CHAT_SESSION_RECHECK_SECONDS", default=60.0)
# Name of a provider config that writes conversation titles; empty: the first words of the chat.
CHAT_TITLE_PROVIDER = env.str("CHAT_TITLE_PROVIDER", default="")
# Shared conversation links open for visitors who are not signed in (else: any signed-in user).
CHAT_PUBLIC_SHARES = env.bool("CHAT_PUBLIC_SHARES", default=False)

# --- Attachments ----------------------------------------------------------------------------------
# Largest file a user may attach, and largest total of one message's files, in bytes.
ATTACHMENT_MAX_FILE_BYTES = env.int("ATTACHMENT_MAX_FILE_BYTES", default=10 * 1024 * 1024)
ATTACHMENT_MAX_MESSAGE_BYTES = env.int("ATTACHMENT_MAX_MESSAGE_BYTES", default=20 * 1024 * 1024)
# Most files one message may carry.
ATTACHMENT_MAX_FILES = env.int("ATTACHMENT_MAX_FILES", default=10)
# Most characters of text one text file or PDF may give the provider (about 50,000 tokens).
ATTACHMENT_MAX_TEXT_CHARS = env.int("ATTACHMENT_MAX_TEXT_CHARS", default=200_000)
# Files uploaded but never sent are deleted after this many hours (at their owner's next upload).
ATTACHMENT_UNSENT_HOURS = env.float("ATTACHMENT_UNSENT_HOURS", default=24.0)

# --- HTTP limits (chatsite.server in front of Daphne, chatsite.request_limits in front of Django)
# A request head must be complete this long after the connection opens (or the last response).
HTTP_HEAD_TIMEOUT_SECONDS = env.float("HTTP_HEAD_TIMEOUT_SECONDS", default=30.0)
# A connection that sends nothing for this long is closed: a stalled body, an idle keep-alive.
HTTP_IDLE_TIMEOUT_SECONDS = env.float("HTTP_IDLE_TIMEOUT_SECONDS", default=30.0)
# Largest request body from a client that is not signed in (the sign-in form is tiny).
HTTP_MAX_ANONYMOUS_BODY_BYTES = env.int("HTTP_MAX_ANONYMOUS_BODY_BYTES", default=16 * 1024)
# Largest request body from a signed-in user, except imports (their own limit, 20 MB): room for
# the chat form's message and system prompt at CHAT_MAX_CONTENT_BYTES each, percent-encoded.
HTTP_MAX_BODY_BYTES = env.int(
    "HTTP_MAX_BODY_BYTES", default=max(1024 * 1024, 6 * CHAT_MAX_CONTENT_BYTES + 64 * 1024)
)
