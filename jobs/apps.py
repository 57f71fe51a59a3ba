from django.apps import AppConfig
from django.core import checks


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Connects the Celery signal handlers that track runs on the worker,
        # and those that keep the worker's environment from its command runs.
        from jobs.worker import hardening, signals  # noqa: F401


@checks.register(checks.Tags.database)
def secrets_key_check(app_configs, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Stop `manage.py migrate` (run on every start by `make run` and the compose file) and
    `check --database default` when stored secrets could not be read: a database check,
    so other commands do not query the database for it."""
    if not databases:
        return []
    from jobs.definitions.secrets import secrets_key_problem

    problem = secrets_key_problem()
    return [checks.Error(problem, id="jobs.E001")] if problem else []
