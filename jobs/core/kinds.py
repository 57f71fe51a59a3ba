"""The job kinds and notification options, and the checks of their settings.

`JobType.clean()` calls `kind_config_errors` and `notification_config_errors`
here, so the admin, the API and the import commands refuse the same
definitions. How each kind is published and executed is in
jobs/runs/executors.py; who is told when a run ends, in jobs/notifications.py.
"""

import functools
import re
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from jobs.core import command_allowlist, net, signatures
from jobs.core.redaction import is_credential_name, only_secret_references
from jobsite.celery import app


class Kind(models.TextChoices):
    TASK = "task", "Celery task"
    HTTP = "http", "HTTP request"
    COMMAND = "command", "Command"
    WORKFLOW = "workflow", "Workflow"


class StepArgs(models.TextChoices):
    """How a workflow calls its `task` steps (JobType.step_args)."""

    PARAMS = "params", "Params: the step's params as keyword arguments"
    DIRECTOR = (
        "director",
        (
            "celery-director's: the results of the steps it depends on as positional arguments, "
            "and payload and workflow_id as keyword arguments"
        ),
    )


class NotifyOn(models.TextChoices):
    NEVER = "never"
    FAILURE = "failure"
    COMPLETION = "completion"


class NotifyStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
HTTP_KEYS = {"method", "url", "headers", "body", "timeout_seconds", "expected_status"}
COMMAND_KEYS = {"argv", "timeout_seconds", "env"}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables that change which program runs or what it loads, not what it is given:
# with them, an allowed argv could run anything.
ENV_REFUSED = frozenset({"PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "PS4", "HOME", "TMPDIR"})
ENV_REFUSED_PREFIXES = ("LD_", "DYLD_", "PYTHON", "PERL", "RUBY", "NODE_", "JAVA_TOOL", "JOBSITE_")
MAX_RECIPIENTS = 50
MIN_SECRET_LENGTH = 16


@functools.cache
def _import_task_modules() -> None:
    # Once per process: the modules' tasks stay registered, and each import also
    # runs Django's system checks (Celery's Django fixup), a quarter of a second.
    app.loader.import_default_modules()


def registered_task_names() -> list[str]:
    """Celery tasks a `task` job type may name: users' and built-in ones, not Celery's or Jobsite's own."""
    _import_task_modules()
    return sorted(name for name in app.tasks if not name.startswith(("celery.", "jobsite.")))


# --- Each kind's settings -------------------------------------------------------------


def _task_errors(job_type: Any) -> dict[str, list[str]]:
    if not job_type.task:
        return {"task": ["Name the Celery task to run, e.g. 'jobs.builtin.echo'."]}
    if job_type.task not in registered_task_names():
        return {
            "task": [
                f"Unknown task '{job_type.task}': it is not registered. GET /api/v1/tasks/ lists the tasks you can use."
            ]
        }
    return {}


def _http_errors(job_type: Any) -> dict[str, list[str]]:
    config = job_type.http
    if not isinstance(config, dict):
        return {"http": ["Must be an object with at least a 'url'."]}
    problems = []
    unknown = set(config) - HTTP_KEYS
    if unknown:
        problems.append(f"Unknown keys: {', '.join(sorted(unknown))}.")
    method = str(config.get("method", "GET")).upper()
    if method not in HTTP_METHODS:
        problems.append(f"method '{config.get('method')}': use one of {', '.join(HTTP_METHODS)}.")
    url_problem = net.url_problem(config.get("url"))
    if url_problem:
        problems.append(f"url: {url_problem}")
    headers = config.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        problems.append("headers: must be an object of strings.")
    timeout = config.get("timeout_seconds", 30)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        problems.append("timeout_seconds: must be a number of seconds between 1 and 3600.")
    expected = config.get("expected_status", [])
    if not isinstance(expected, list) or not all(isinstance(c, int) and 100 <= c <= 599 for c in expected):
        problems.append("expected_status: must be a list of HTTP status codes, e.g. [200, 201].")
    return {"http": problems} if problems else {}


def _command_errors(job_type: Any) -> dict[str, list[str]]:
    config = job_type.command
    argv = config.get("argv") if isinstance(config, dict) else None
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        return {"command": ['Give "argv": a non-empty list of strings, e.g. ["/usr/bin/env", "true"].']}
    problems = []
    not_allowed = command_allowlist.argv_problem(
        argv, settings.JOBS_COMMAND_ALLOWLIST, allow_launchers=settings.JOBS_COMMAND_ALLOW_LAUNCHERS
    )
    if not_allowed:
        problems.append(not_allowed)
    timeout = config.get("timeout_seconds", 60)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 < timeout <= 86400:
        problems.append("timeout_seconds: must be a whole number of seconds between 1 and 86400.")
    problems += _env_errors(config.get("env", {}))
    if set(config) - COMMAND_KEYS:
        problems.append(f"Unknown keys: {', '.join(sorted(set(config) - COMMAND_KEYS))}.")
    return {"command": problems} if problems else {}


def _env_errors(env: Any) -> list[str]:
    """What is wrong with a command's `env`: variables added to the few the command gets."""
    if not isinstance(env, dict) or not all(isinstance(value, str) for value in env.values()):
        return ['env: must be an object of strings, e.g. {"API_TOKEN": "{{ secrets.API_TOKEN }}"}.']
    problems = []
    for name in env:
        if not ENV_NAME.fullmatch(name):
            problems.append(f"env: '{name}' is not a variable name (letters, digits and underscores).")
        elif name.upper() in ENV_REFUSED or name.upper().startswith(ENV_REFUSED_PREFIXES):
            problems.append(
                f"env: '{name}' is not allowed: it would change which program runs or what it loads "
                "(or it is set by Jobsite)."
            )
        elif is_credential_name(name) and env[name] and not only_secret_references(env[name]):
            # A job type is read by every role; its env is not masked, so a credential goes in a secret.
            problems.append(
                f"env: '{name}' looks like a credential: store its value as a secret and give "
                f"{{{{ secrets.NAME }}}} here (POST /api/v1/secrets/)."
            )
    return problems


def params_in_query(config: dict) -> bool:
    """Whether an `http` job type sends a run's params as the query string: without
    a `body`, POST, PUT and PATCH send them as JSON, other methods as the query."""
    return "body" not in config and str(config.get("method", "GET")).upper() not in ("POST", "PUT", "PATCH")


@functools.lru_cache(maxsize=1024)
def fixed_query_names(url: str) -> frozenset[str]:
    """The names of the query parameters that `url` itself sets."""
    try:
        return frozenset(httpx.URL(url).params.keys())
    except (httpx.InvalidURL, TypeError):
        return frozenset()


def fixed_param_errors(job_type: Any, params: dict) -> list[str]:
    """Params that would replace a query parameter the `http` job type's URL fixes.

    The URL is what the job type's author chose to call: a run's params add to
    its query string, they never change what it says (the executor keeps the
    URL's value in any case, see jobs/runs/executors.py)."""
    config = job_type.http
    if job_type.kind != Kind.HTTP or not isinstance(config, dict) or not isinstance(params, dict):
        return []
    url = config.get("url")
    if not params_in_query(config) or not isinstance(url, str):
        return []
    fixed = fixed_query_names(url)
    return [
        f"{name}: the job type's url fixes the query parameter '{name}'; leave it out of params "
        "(or take it out of the url, to let each run choose it)."
        for name in sorted(set(params) & fixed)
    ]


_CHECKS = {Kind.TASK: _task_errors, Kind.HTTP: _http_errors, Kind.COMMAND: _command_errors}


def kind_config_errors(job_type: Any) -> dict[str, list[str]]:
    """What is wrong with the settings of `job_type`'s kind (a workflow's steps
    are checked with jobs/workflows/graph.py), by field; {} when nothing is."""
    check = _CHECKS.get(job_type.kind)
    return check(job_type) if check else {}


# --- Notification settings --------------------------------------------------------------


def split_emails(text: str) -> list[str]:
    """Addresses from text separated by commas, semicolons, spaces or lines."""
    return [part for part in text.replace(";", ",").replace("\n", ",").replace(" ", ",").split(",") if part]


def clean_emails(emails: list[str]) -> list[str]:
    seen, cleaned = set(), []
    for email in emails:
        email = email.strip()
        if email.lower() not in seen:
            seen.add(email.lower())
            cleaned.append(email)
    return cleaned


def email_list_errors(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return ['Give a list of email addresses, e.g. ["ops@example.com"].']
    problems = []
    for email in value:
        try:
            validate_email(email.strip())
        except ValidationError:
            problems.append(f"{email!r} is not a valid email address.")
    if len(value) > MAX_RECIPIENTS:
        problems.append(f"At most {MAX_RECIPIENTS} addresses, not {len(value)}: use a mailing list.")
    return problems


def notification_config_errors(job_type: Any) -> dict[str, list[str]]:
    errors = {}
    email_problems = email_list_errors(job_type.notify_emails)
    if email_problems:
        errors["notify_emails"] = email_problems
    if job_type.webhook_url:
        url_problem = net.url_problem(job_type.webhook_url)
        if url_problem:
            errors["webhook_url"] = [url_problem[0].upper() + url_problem[1:]]
        if len(job_type.webhook_secret) < MIN_SECRET_LENGTH:
            errors["webhook_secret"] = [
                f"Give a secret of at least {MIN_SECRET_LENGTH} characters to sign webhook requests with, "
                "e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            ]
        elif problem := signatures.standard_secret_error(job_type.webhook_secret):
            errors["webhook_secret"] = [problem]
    return errors
