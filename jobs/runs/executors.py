"""One executor per job kind: how a run is sent to the workers, and (for kinds
Jobsite runs itself) how it is executed there and stopped.

Adding a kind is adding it to jobs/core/kinds.py (with its config check) and a
class here in EXECUTORS.
"""

import codecs
import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from django.conf import settings

from jobs.core import command_allowlist, kinds, net, secrets
from jobs.core.redaction import mask_url, mask_urls
from jobs.models import JobType, Run, RunLogLine, Secret
from jobs.notifications import notify_on_for
from jobs.runs import logs as run_logs
from jobs.workflows import steps as workflow_steps
from jobsite.celery import app

# Every message Jobsite publishes for a run carries this header, so the worker's
# signal handlers skip other tasks without a database lookup.
RUN_HEADER = "jobsite_run"
# ...and this one, the run's notify_on rule, so that a run that ends need not
# look up its job type to know whether to notify (it almost never has to).
NOTIFY_HEADER = "jobsite_notify_on"
# ...and this one, the id of its workflow run ("" for none), so that a run that
# ends need not look it up to know whether a workflow must advance.
PARENT_HEADER = "jobsite_parent"
# ...and, on a workflow's step whose workflow run was already running when the
# step was published, this one: its start need not mark the workflow run running.
PARENT_RUNNING_HEADER = "jobsite_parent_running"
# ...and this one on a run its trigger wrote `queued` before publishing it (run_create),
# so that its start need not wait for the disk (run_started in jobs/runs/tracking.py).
QUEUED_HEADER = "jobsite_queued"
# ...and, on a run published again because its job type was at max_concurrency,
# how many times it has waited for a slot (its next wait is longer).
WAITS_HEADER = "jobsite_slot_waits"
logger = logging.getLogger(__name__)


class RunFailed(Exception):
    """The job ran and failed: its message becomes the run's error, with no traceback."""


def queue_of(run: Run, default: str = "") -> str:
    """The queue a run's task is sent to: its job type's, else (a workflow's
    step) its workflow's, else the default queue (`default`, if the caller has
    read it already: see Publisher)."""
    # Reads run.parent.job_type for a step: select_related it when reading many.
    workflow_queue = run.parent.job_type.queue if run.parent_id else ""
    return run.job_type.queue or workflow_queue or default or app.conf.task_default_queue


@dataclass(frozen=True)
class Publisher:
    """A producer publishing many runs' messages (runs_publish, send_message), with
    what each message reads of Celery's settings, of Celery and of this process
    read once for all of them: each settings lookup walks Celery's chained
    settings down to Django's, some 20 µs, as much as a tenth of a message's
    CPU; Celery's message functions are cached properties read behind a lock;
    the message's origin (this process's node name) asks for the host's name;
    the task running (a worker's, publishing a workflow's next steps) is the
    same for all of them, made and used within one call.
    `retry`: kombu's retry of each message, None for the setting's; off for a
    producer's batch (kombu's Producer.batch), whose messages reach Redis only at
    its flush, which raises if Redis may not have taken them: the retry's wrapper
    around each message guarded nothing, at a tenth of its CPU."""

    producer: Any
    retry: bool | None = None
    default_queue: str = field(default_factory=lambda: app.conf.task_default_queue)
    sent_event: bool = field(default_factory=lambda: app.conf.task_send_sent_event)
    origin: str = field(default_factory=anon_nodename)  # what send_task names each message's
    tasks: Any = field(default_factory=lambda: app.tasks)
    router: Any = field(default_factory=lambda: app.amqp.router)
    create_task_message: Callable = field(default_factory=lambda: app.amqp.create_task_message)
    send_task_message: Callable = field(default_factory=lambda: app.amqp.send_task_message)
    current_task: Any = field(default_factory=lambda: app.current_worker_task)


def secret_values(names: set[str]) -> dict[str, str]:
    """The values of the secrets a run uses, read now, on the worker; RunFailed if one cannot be."""
    try:
        return Secret.values_for(names)
    except secrets.SecretsError as exc:
        raise RunFailed(f"Not run: {exc}") from None


def secrets_masker(values: dict[str, str]) -> secrets.Masker:
    """What masks these secrets' values in the run's result, error and log lines."""
    masker = secrets.Masker(values.values())
    if values and (capture := run_logs.current()) is not None:
        capture.mask_also(masker.text)
    return masker


@contextlib.contextmanager
def masking(masker: secrets.Masker):
    """Re-raise a failure whose message holds a secret's value with the value masked:
    what a run reports is stored and shown to everyone who may see it."""
    try:
        yield
    except SoftTimeLimitExceeded:
        raise  # a cancel or the time limit: tracking says so, in its own words
    except RunFailed as exc:
        if masker.reveals(str(exc)):
            raise RunFailed(masker.text(str(exc))) from None
        raise
    except Exception as exc:
        if masker.reveals(str(exc)):
            raise RunFailed(f"{type(exc).__name__}: {masker.text(str(exc))}") from None
        raise


def send_message(
    publisher: Publisher,
    name: str,
    *,
    task_id: str,
    args: list,
    kwargs: dict,
    time_limit: int,
    soft_time_limit: int,
    countdown: float | None = None,
    **options,
) -> None:
    """Publish a task's message with `publisher`, whose producer has declared its queue: the
    message `app.send_task` sends for the same arguments (tests/test_publish_messages.py
    compares them), built and sent by the same Celery functions, in the same steps
    (`amqp.create_task_message`, `amqp.send_task_message`), without what send_task
    does around them for any caller: its settings lookups, a result object. That
    was as much CPU again as the message itself, for each of the thousands a
    dispatcher tick or a bulk trigger publishes. `options`: send_task's."""
    options = {"retry": publisher.retry, **options}
    task = publisher.tasks.get(name)
    # The options the task itself sets, if this process knows it, under the given ones.
    preset = {key: value for key, value in (task._get_exec_options() if task else {}).items() if value is not None}
    if "expires" in preset:  # send_task's own handling of it, then
        app.send_task(name, args=args, kwargs=kwargs, task_id=task_id, time_limit=time_limit,
                      soft_time_limit=soft_time_limit, countdown=countdown, producer=publisher.producer,
                      **options)  # fmt: skip
        return
    options = {**preset, **options}
    for given in ("time_limit", "soft_time_limit"):  # the run's own, passed apart
        options.pop(given, None)
    ignore_result = options.pop("ignore_result", None)
    options = publisher.router.route(options, name, args, kwargs, task)
    current = publisher.current_task  # a workflow's next step, published by the worker that ended the last one
    root_id = parent_id = None
    if current:
        root_id, parent_id = current.request.root_id or current.request.id, current.request.id
        if app.conf.task_inherit_parent_priority:
            options.setdefault("priority", current.request.delivery_info.get("priority"))
    message = publisher.create_task_message(
        task_id, name, args, kwargs, countdown, None, None, None, None, 0, None, None, None,
        app.thread_oid, time_limit, soft_time_limit, publisher.sent_event, root_id, parent_id, None, None,
        origin=publisher.origin, ignore_result=ignore_result, replaced_task_nesting=0, **options,
    )  # fmt: skip
    publisher.send_task_message(publisher.producer, name, message, **options)
    if current:
        current.add_trail(app.AsyncResult(task_id))


class Executor:
    kind: str
    task_name = "jobsite.execute_run"

    def publish(
        self,
        run: Run,
        *,
        countdown: float | None = None,
        publisher: Publisher | None = None,
        queue: str = "",
        headers: dict | None = None,
    ) -> None:
        run_id = str(run.id)
        # Its arguments shown as written (Flower), without Celery's safe repr of each: the same text.
        self._send(
            run, self.task_name, args=[run_id], kwargs={}, countdown=countdown, publisher=publisher, queue=queue,
            headers=headers, argsrepr=f"['{run_id}']", kwargsrepr="{}",
        )  # fmt: skip

    def _send(
        self,
        run: Run,
        task_name: str,
        *,
        args: list,
        kwargs: dict,
        countdown=None,
        publisher: Publisher | None = None,
        queue: str = "",
        headers=None,
        **more,
    ) -> None:
        """Send the run's message, to `queue` if the caller knows it already (queue_of). A
        caller that brings its `publisher` (runs_publish) has declared the run's queue on
        its producer: Celery would check that again for each message."""
        job_type = run.job_type
        options = {
            "queue": queue or queue_of(run),
            "priority": job_type.priority,
            "soft_time_limit": job_type.soft_time_limit,
            "time_limit": job_type.hard_time_limit,
            "countdown": countdown,
            "headers": {
                RUN_HEADER: True,
                NOTIFY_HEADER: notify_on_for(run),
                PARENT_HEADER: str(run.parent_id or ""),
                # run.parent is read already, by queue_of; locked when a workflow advance publishes it.
                **({PARENT_RUNNING_HEADER: True} if run.parent_id and run.parent.status == Run.Status.RUNNING else {}),
                **(headers or {}),
            },
            **more,
        }
        if publisher is None:
            app.send_task(task_name, args=args, kwargs=kwargs, task_id=str(run.id), **options)
        else:
            send_message(publisher, task_name, task_id=str(run.id), args=args, kwargs=kwargs, declare=[], **options)

    def execute(self, run: Run) -> Any:
        raise NotImplementedError(f"{self.kind} runs are not executed by Jobsite")

    def cancel_signal(self) -> str:
        # SIGUSR1 raises SoftTimeLimitExceeded inside the task, so Jobsite's own
        # executors stop cooperatively: kill the child process, drop the request.
        return "SIGUSR1"

    def stop(self, run: Run) -> None:
        """Tell the workers to drop the cancelled run's task, or stop it if it started."""
        # terminate=True also covers a run that a worker started after we read it.
        try:
            app.control.revoke(str(run.pk), terminate=True, signal=self.cancel_signal())
        except Exception:
            logger.warning("Could not send the revoke for run %s", run.pk, exc_info=True)


_SCALARS = (str, int, float, bool, type(None))


def _shown(value: list | tuple | dict) -> str:
    """A task's arguments as Flower shows them (the message's argsrepr and kwargsrepr).
    Flat ones, the usual params, by repr, as Celery's safe repr writes them (but a
    string's control characters escaped), without its walk of each value; any
    other, or a long one, by the safe repr itself, which cuts nesting and length."""
    items = value.values() if isinstance(value, dict) else value
    if all(isinstance(item, _SCALARS) for item in items):
        text = repr(value)
        if len(text) <= app.amqp.argsrepr_maxsize:
            return text
    return saferepr(value, app.amqp.argsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels)


class TaskExecutor(Executor):
    kind = JobType.Kind.TASK

    def publish(self, run: Run, **options) -> None:
        # Its params are the task's keyword arguments; a step called celery-director's way
        # also gets the results of the steps it depends on (read now: they are final).
        # `options`: Executor.publish's.
        director = run.parent_id is not None and workflow_steps.called_director_way(run, run.parent)
        args = workflow_steps.director_args(run) if director else []
        self._send(
            run,
            run.job_type.task,
            args=args,
            kwargs=run.params,
            argsrepr=_shown(args or ()),  # no arguments: Celery's "()"
            kwargsrepr=_shown(run.params),
            **options,
        )

    def cancel_signal(self) -> str:
        # A user's task cannot be asked to stop; its process is terminated.
        return "SIGTERM"


class HttpExecutor(Executor):
    kind = JobType.Kind.HTTP

    def execute(self, run: Run) -> dict:
        template = run.job_type.http
        values = secret_values(secrets.names_in(template))
        masker = secrets_masker(values)
        # Headers that carry a secret are left behind by a redirect to another origin, as credentials are.
        sensitive = frozenset(name for name, value in template.get("headers", {}).items() if secrets.names_in(value))
        with masking(masker):
            return masker(self._execute(run, secrets.substitute(template, values), sensitive))

    def _execute(self, run: Run, config: dict, sensitive: frozenset[str]) -> dict:
        method = config.get("method", "GET").upper()
        url = config["url"]
        expected = config.get("expected_status") or list(range(200, 300))
        headers = dict(config.get("headers", {}))
        body: Any = None  # sent as JSON; None for no body
        if "body" in config:
            body = config["body"]
        elif not kinds.params_in_query(config):
            body = run.params
        elif run.params:
            url = self._with_params(url, run.params)
        timeout = httpx.Timeout(config.get("timeout_seconds", 30))
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for _ in range(settings.JOBS_HTTP_MAX_REDIRECTS + 1):
                response, content, truncated = self._send_pinned(client, method, url, headers, body)
                if not response.is_redirect:
                    break
                # Each hop goes through the host rules again (send_pinned), and
                # leaves its credentials behind when it leaves their origin.
                try:
                    hop = net.redirect_hop(
                        response,
                        url=url,
                        method=method,
                        headers=headers,
                        has_body=body is not None,
                        sensitive=sensitive,
                    )
                except net.RequestFailed as exc:
                    raise RunFailed(mask_urls(str(exc))) from None
                method, url, headers = hop.method, hop.url, hop.headers
                body = body if hop.keep_body else None
            else:
                raise RunFailed(f"More than {settings.JOBS_HTTP_MAX_REDIRECTS} redirects, last to {mask_url(url)}")
        result: dict[str, Any] = {
            "status_code": response.status_code,
            "url": mask_url(url),  # results and errors are read by all: credentials masked
            "content_type": response.headers.get("content-type", ""),
            "body": content.decode(response.encoding or "utf-8", errors="replace"),
            "truncated": truncated,
        }
        if "json" in result["content_type"] and not truncated:
            with contextlib.suppress(ValueError):
                result["json"] = json.loads(content)
        if response.status_code not in expected:
            excerpt = result["body"][:500]
            raise RunFailed(f"HTTP {response.status_code} from {mask_url(url)}, expected {expected}: {excerpt}")
        return result

    @staticmethod
    def _with_params(url: str, params: dict) -> str:
        """`url` with the run's params added to its query string. A param the URL
        already sets is left out: the trigger refuses it (JobType.run_params_errors),
        and a run that got here with one (triggered before that check, or before
        the URL changed) still calls the URL its job type fixes."""
        target = httpx.URL(url)
        fixed = set(target.params.keys())
        for name, value in params.items():
            if name not in fixed:
                target = target.copy_add_param(name, value if isinstance(value, str) else json.dumps(value))
        return str(target)

    @staticmethod
    def _send_pinned(client: httpx.Client, method: str, url: str, headers: dict, body: Any) -> net.PinnedResponse:
        try:
            return net.send_pinned(
                client,
                method,
                url,
                headers=headers,
                max_body_bytes=settings.JOBS_HTTP_MAX_BODY_BYTES,
                json=body,
            )
        except net.RequestFailed as exc:
            raise RunFailed(mask_urls(str(exc))) from None


class CommandExecutor(Executor):
    kind = JobType.Kind.COMMAND

    def execute(self, run: Run) -> dict:
        config = run.job_type.command
        template = config.get("env", {})
        values = secret_values(secrets.names_in(template))
        masker = secrets_masker(values)
        with masking(masker):
            return masker(self._execute(run, config, secrets.substitute(template, values)))

    def _execute(self, run: Run, config: dict, extra_env: dict[str, str]) -> dict:
        argv = config["argv"]
        # This worker's allowlist may be shorter than the one the job type was saved under.
        not_allowed = command_allowlist.argv_problem(
            argv, settings.JOBS_COMMAND_ALLOWLIST, allow_launchers=settings.JOBS_COMMAND_ALLOW_LAUNCHERS
        )
        if not_allowed:
            raise RunFailed(f"Not run: {not_allowed}")
        timeout = config.get("timeout_seconds", 60)
        # An empty directory of its own to start in and to write to, not the
        # worker's (often the project, with its .env); removed afterwards.
        with (
            tempfile.TemporaryDirectory(prefix="jobsite-run-", ignore_cleanup_errors=True) as workdir,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            # The worker's environment holds secrets; the command gets only what it needs.
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": os.environ.get("LANG", "C.UTF-8"),
                **extra_env,  # the job type's own (its names are checked: jobs/core/kinds.py)
                "HOME": workdir,
                "TMPDIR": workdir,
                "JOBSITE_RUN_ID": str(run.id),
                "JOBSITE_PARAMS": json.dumps(run.params),
            }
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=workdir,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RunFailed(f"Cannot start {argv[0]}: {exc.strerror}") from None
            output = _CommandOutput(out, err)
            try:
                exit_code = output.follow(process, timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill(process)
                raise RunFailed(f"Command timed out after {timeout} s") from None
            except BaseException:
                # Cancelled (SoftTimeLimitExceeded) or the worker is stopping.
                self._kill(process)
                raise
            finally:
                output.forward()
            stdout, stdout_cut = self._tail(out)
            stderr, stderr_cut = self._tail(err)
        result = {
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": stdout_cut,
            "stderr_truncated": stderr_cut,
        }
        if exit_code != 0:
            raise RunFailed(f"Command exited with code {exit_code}\n--- stderr (tail) ---\n{stderr}")
        return result

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    @staticmethod
    def _tail(stream) -> tuple[str, bool]:
        limit = settings.JOBS_COMMAND_OUTPUT_TAIL_BYTES
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(size - limit, 0))
        text = stream.read().decode("utf-8", errors="replace")
        return (f"[… {size - limit} earlier bytes cut]\n{text}" if size > limit else text), size > limit


class _CommandOutput:
    """A running command's stdout and stderr, forwarded to the run's log
    (jobs/runs/logs.py) as they grow, every FLUSH_SECONDS."""

    def __init__(self, *files) -> None:
        self.files = [(file, level) for file, level in zip(files, (RunLogLine.STDOUT, RunLogLine.STDERR), strict=True)]
        self.read = [0, 0]
        # A chunk may end inside a character: each stream decodes across chunks.
        self.decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in files]
        self.capture = run_logs.current()

    def follow(self, process: subprocess.Popen, *, timeout: float) -> int:
        """Wait for the command's end (its exit code), forwarding its output meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return process.wait(timeout=max(min(run_logs.FLUSH_SECONDS, left), 0))
            except subprocess.TimeoutExpired:
                if left <= 0:
                    raise
            self.forward()

    def forward(self) -> None:
        if self.capture is None:
            return
        for index, (file, level) in enumerate(self.files):
            # pread: the file's offset is shared with the command, which writes at it.
            size = os.fstat(file.fileno()).st_size
            start = self.read[index]
            if size - start > self.capture.max_bytes:  # only the newest lines are kept anyway
                self.capture.add(level, "", f"[… {size - start - self.capture.max_bytes} bytes of output skipped]")
                start = size - self.capture.max_bytes
            while start < size:
                chunk = os.pread(file.fileno(), min(size - start, 1024 * 1024), start)
                if not chunk:
                    break
                start += len(chunk)
                self.capture.write(level, self.decoders[index].decode(chunk))
            self.read[index] = start


class WorkflowExecutor(Executor):
    """A workflow run is no Celery task: runs_publish starts its first steps
    (jobs/runs/trigger.py), and each step is published as a run of its own."""

    kind = JobType.Kind.WORKFLOW

    def publish(self, run: Run, **options) -> None:
        raise TypeError("a workflow run is published by runs_publish, which advances it")

    def stop(self, run: Run) -> None:
        pass  # nothing of its own runs; run_cancel cancels its steps


EXECUTORS: dict[str, Executor] = {
    e.kind: e for e in (TaskExecutor(), HttpExecutor(), CommandExecutor(), WorkflowExecutor())
}


def executor_for(kind: str) -> Executor:
    return EXECUTORS[kind]
