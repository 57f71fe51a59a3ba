"""The Django admin of Jobsite's models, one module per page family; and
django-celery-beat's periodic tasks and django-axes' failed logins, with their
actions fixed (beat.py, logins.py)."""

from jobs.admin import beat, job_types, logins, runs, schedules, secrets

__all__ = ["beat", "job_types", "logins", "runs", "schedules", "secrets"]
