from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Connects the Celery signal handlers that track runs on the worker,
        # and those that keep the worker's environment from its command runs.
        from jobs.worker import hardening, signals  # noqa: F401
