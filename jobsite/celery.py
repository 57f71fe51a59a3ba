import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsite.settings")

app = Celery("jobsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks in installed apps' tasks.py; users' own modules come in through
# JOBS_TASK_MODULES, which settings maps onto Celery's `imports`.
app.autodiscover_tasks()
