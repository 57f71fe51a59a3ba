from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Connects the Celery signal handlers that track runs on the worker.
        from jobs.worker import signals  # noqa: F401
