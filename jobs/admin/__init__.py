"""The Django admin of Jobsite's models, one module per page family, and
django-celery-beat's periodic tasks with permissions on their actions."""

from jobs.admin import beat, job_types, runs, schedules

__all__ = ["beat", "job_types", "runs", "schedules"]
