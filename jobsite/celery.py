import os
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from celery import Celery
from celery.app.defaults import SETTING_KEYS

from jobsite import redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsite.settings")


class CelerySettings(Mapping):
    """Django's CELERY_* settings and nothing else, under Celery's own names
    (CELERY_BROKER_URL is `broker_url`), read once, when Celery first needs them.

    Celery's usual `config_from_object("django.conf:settings", namespace="CELERY")`
    puts every Django setting in app.conf, and a worker hands app.conf to anyone
    who asks `inspect conf`: Flower shows it on its worker pages and in
    /api/workers. That showed EMAIL_URL, REDIS_URL and FLOWER_BASIC_AUTH in full,
    and the broker URL with its password, as Celery masks it only under its own
    name. Here app.conf holds Celery's settings alone, and Celery's censoring
    masks the passwords in `broker_url` and `result_backend` and any setting whose
    name holds KEY, SECRET, PASS or TOKEN. Settings that are not Celery's own
    (CELERY_DB_REUSE_MAX, read by Celery's Django fix-up) keep their Django name.
    See docs/security.md, "Flower".
    """

    @cached_property
    def _settings(self) -> dict[str, Any]:
        from django.conf import settings

        found = {}
        for name in dir(settings):
            if name.startswith("CELERY_"):
                key = name.removeprefix("CELERY_").lower()
                found[key if key in SETTING_KEYS else name] = getattr(settings, name)
        return found

    def __getitem__(self, key: str) -> Any:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)


# RunTask lets Jobsite hold back a run's task before it executes (jobs/worker/task_base.py).
# Before any broker connection: a worker holding a countdown's message survives a Redis restart.
redis_transport.install()
app = Celery("jobsite", task_cls="jobs.worker.task_base:RunTask")
app.config_from_object(CelerySettings())
# Tasks in installed apps' tasks.py; users' own modules come in through
# JOBS_TASK_MODULES, which settings maps onto Celery's `imports`.
app.autodiscover_tasks()
