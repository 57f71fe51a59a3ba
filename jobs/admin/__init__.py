"""The Django admin of Jobsite's models, one module per page family."""

from jobs.admin import job_types, runs, schedules

__all__ = ["job_types", "runs", "schedules"]
