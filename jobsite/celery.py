import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsite.settings")

# RunTask lets Jobsite hold back a run's task before it executes (jobs/worker/task_base.py).
app = Celery("jobsite", task_cls="jobs.worker.task_base:RunTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks in installed apps' tasks.py; users' own modules come in through
# JOBS_TASK_MODULES, which settings maps onto Celery's `imports`.
app.autodiscover_tasks()
