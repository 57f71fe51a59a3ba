"""Settings for the test suite: the real ones, with only what tests must change.

The test process and the Celery workers it starts both load this module, so
they agree on the broker, the allow-lists and the database.
"""

import os
import socket

from jobs.core import command_allowlist
from tests import commands


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A developer's .env (make run writes one) must not reach the tests: its
# database, broker or allow-lists would change what they test.
os.environ["JOBS_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")
# Under pytest-xdist each test process (gw0, gw1, …) has a Redis and an SMTP
# server of its own: the ports its parent chose are not inherited.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if os.environ.get("JOBS_TEST_PORTS_FOR", "") != _xdist_worker:
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("EMAIL_URL", None)
os.environ["JOBS_TEST_PORTS_FOR"] = _xdist_worker
# The tests start their own Redis on a free port (tests/conftest.py); workers
# they spawn inherit this variable and so find the same one.
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:{_free_port()}/0")
# Likewise an SMTP server of their own (aiosmtpd, the `mailbox` fixture): the
# workers email it. Notification retries are quick, yet span more than the
# 20 s outage that a test rides out (1+2+3+3+... s over 11 attempts: 27 s).
os.environ.setdefault("EMAIL_URL", f"smtp://127.0.0.1:{_free_port()}?timeout=5")
os.environ.setdefault("JOBS_NOTIFY_RETRY_BACKOFF_SECONDS", "1")
os.environ.setdefault("JOBS_NOTIFY_RETRY_BACKOFF_MAX_SECONDS", "3")
os.environ.setdefault("JOBS_NOTIFY_MAX_ATTEMPTS", "11")
os.environ.setdefault("JOBS_NOTIFY_LEASE_SECONDS", "30")
os.environ.setdefault("JOBS_WEBHOOK_TIMEOUT_SECONDS", "5")
# Reliability (tests/e2e/test_faults.py, test_limits.py and test_lost.py): the
# sweeper, the stuck check, the lost-message check, the hard time limit and
# max_concurrency's waits act within seconds instead of minutes.
os.environ.setdefault("JOBS_PENDING_REPUBLISH_SECONDS", "2")
os.environ.setdefault("JOBS_HARD_TIMEOUT_GRACE_SECONDS", "2")
os.environ.setdefault("JOBS_STUCK_MARGIN_SECONDS", "1")
os.environ.setdefault("JOBS_STUCK_CHECK_SECONDS", "2")
os.environ.setdefault("JOBS_QUEUED_CHECK_SECONDS", "3")
os.environ.setdefault("JOBS_CONCURRENCY_WAIT_SECONDS", "0.2")
os.environ.setdefault("JOBS_CONCURRENCY_WAIT_MAX_SECONDS", "1")
os.environ.setdefault("JOBS_HTTP_ALLOWED_HOSTS", "127.0.0.1")
# A fixed key, so that the test process and the workers it starts read the same secrets.
os.environ.setdefault("JOBS_SECRETS_KEYS", "eCNMDyTVqPz1rKzYqjLTmIgHMzGjDyDpQNbqS1CYZh0=")
# Schedules in tests/e2e fire every few seconds, to be seen firing within a test.
os.environ.setdefault("JOBS_MIN_SCHEDULE_INTERVAL_SECONDS", "1")
os.environ.setdefault("JOBS_COMMAND_ALLOWLIST", ", ".join(map(command_allowlist.join, commands.ALLOWED)))

from jobsite.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
JOBS_RETRY_BACKOFF_MAX_SECONDS = 2
# Tasks that only the tests use, on the workers they start and in this process.
CELERY_IMPORTS = [*CELERY_IMPORTS, "tests.tasks", "tests.director.tasks"]  # noqa: F405
