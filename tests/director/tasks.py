"""Stand-ins, written here, for celery-director's own test tasks and demo
tasks, under the names its workflows.yml files use (tests/fixtures/director/).

They are written as a celery-director task module is, `(*args, **kwargs)`
reading the previous result in `args[0]` and the payload in
`kwargs["payload"]`; the one change a module needs to run on Jobsite is its
import: `from director import task` becomes the line below. The test workers
load this module (tests/settings.py, CELERY_IMPORTS).
"""

import random
import time

from celery import shared_task as task

# --- celery-director's test tasks ---------------------------------------------------


@task(name="TASK_EXAMPLE")
def task_example(*args, **kwargs):
    return "task_example"


@task(name="TASK_A")
def task_a(*args, **kwargs):
    return "task_a"


@task(name="TASK_B")
def task_b(*args, **kwargs):
    return "task_b"


@task(name="TASK_C")
def task_c(*args, **kwargs):
    return "task_c"


@task(name="TASK_ERROR")
def task_error(*args, **kwargs):
    # In a group, celery-director's tests expect the task beside this one to
    # succeed (a Celery group starts its tasks together), while Jobsite cancels
    # the steps that have not started when one fails (docs/guide.md, "Coming
    # from celery-director"). So wait, up to a bound, until no step of this
    # workflow is still waiting for a worker: on a loaded machine a fixed
    # pause is not always enough.
    _until_no_step_waits(kwargs.get("workflow_id"))
    return 1 / 0


def _until_no_step_waits(workflow_id: str | None, timeout: float = 10) -> None:
    from jobs.models import Run

    waiting = (Run.Status.SCHEDULED, Run.Status.PENDING, Run.Status.QUEUED)
    deadline = time.monotonic() + timeout
    while workflow_id and time.monotonic() < deadline:
        if not Run.objects.filter(parent_id=workflow_id, status__in=waiting).exists():
            return
        time.sleep(0.05)


@task(name="TASK_CELERY_ERROR")
def task_celery_error(*args, **kwargs):
    """Returns what cannot be stored as a result."""

    class Unstorable:
        pass

    return Unstorable()


@task(name="STR")
def ret_str(*args, **kwargs):
    return "return_value"


@task(name="INT")
def ret_int(*args, **kwargs):
    return 1234


@task(name="LIST")
def ret_list(*args, **kwargs):
    return ["jack", "sape", "guido"]


@task(name="NONE")
def ret_none(*args, **kwargs):
    return None


@task(name="DICT")
def ret_dict(*args, **kwargs):
    return {"foo": "bar"}


@task(name="NESTED")
def ret_nested(*args, **kwargs):
    return {
        "jack": 4098,
        "sape": 4139,
        "guido": 4127,
        "nested": {"foo": "bar"},
        "none": None,
        "list": ["jack", "sape", "guido"],
    }


@task(name="DELAY")
def delay(*args, **kwargs):
    time.sleep(300)


# --- Demo tasks: each reads the one before it in args[0] -----------------------------


@task(name="FETCH_PRICES")
def fetch_prices(*args, **kwargs):
    return {"prices": kwargs["payload"]["prices"]}


@task(name="PROCESS_PRICES")
def process(*args, **kwargs):
    prices = args[0]["prices"]
    rate = kwargs["payload"].get("discount", 0)
    return {"prices": [round(price * (1 - rate), 2) for price in prices]}


@task(name="TOTAL")
def total(*args, **kwargs):
    return {"total": round(sum(args[0]["prices"]), 2), "workflow_id": kwargs["workflow_id"]}


# celery-director's own demo (`director init`): a group of two RANDOMs, then ADD.


@task(name="RANDOM")
def generate_random(*args, **kwargs):
    payload = kwargs["payload"]
    return random.randint(payload.get("start", 0), payload.get("end", 10))


@task(name="ADD")
def add_randoms(*args, **kwargs):
    return sum(args[0])


@task(name="RECORD_CALL")
def record_call(*args, **kwargs):
    """What it was called with (a hook's arguments)."""
    return {"args": list(args), "kwargs": kwargs}
