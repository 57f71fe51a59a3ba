"""How long a workflow's orchestration takes, through a real Redis and a worker
with four processes: fan-outs of W parallel echo steps into one join step.

    make test DB=sqlite   PYTEST_ARGS="bench/workflow_fanout.py -s"
    make test DB=postgres PYTEST_ARGS="bench/workflow_fanout.py -s"
    BENCH_WIDTHS=10,50,200 BENCH_RUNS=10 ... to change the sizes

For each width it prints, over the runs: the whole workflow's time (trigger to
succeeded), the time per step, and the join delay (from the last parallel
step's end to the join step's start: locking the workflow run, seeing that all
its dependencies succeeded, resolving its params, publishing it, a worker
picking it up). Numbers, not assertions: the machine is shared and noisy.
"""

import os
import statistics
import time

from jobs.models import Run
from tests.conftest import WORKFLOW_QUEUE, wait_for_run
from tests.e2e.test_execution import define, trigger

WIDTHS = [int(w) for w in os.environ.get("BENCH_WIDTHS", "10,50,200").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "10"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def test_fan_out_timings(workflow_worker, api, settings):
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"\nworkflow fan-out, {engine}, worker concurrency 4, {RUNS} runs per width")
    header = ("width", "total p50 s", "total p95 s", "ms/step", "join delay p50 ms", "p95 ms")
    print("{:>6} {:>12} {:>12} {:>8} {:>18} {:>8}".format(*header))
    for width in WIDTHS:
        parts = [f"p{i:03}" for i in range(width)]
        steps = [{"name": p, "job_type": "echo", "params": {"i": i}} for i, p in enumerate(parts)]
        steps.append({"name": "join", "job_type": "echo", "params": {"n": width}, "depends_on": parts})
        define(api, name=f"fan-{width}", kind="workflow", queue=WORKFLOW_QUEUE, steps=steps)
        totals, delays = [], []
        for _ in range(RUNS):
            started = time.monotonic()
            run = wait_for_run(trigger(api, f"fan-{width}"), timeout=600)
            totals.append(time.monotonic() - started)
            assert run.status == "succeeded", run.error
            join = run.children.get(step_name="join")
            last_end = max(run.children.exclude(pk=join.pk).values_list("finished_at", flat=True))
            delays.append((join.started_at - last_end).total_seconds() * 1000)
            assert Run.objects.filter(parent=run).count() == width + 1
        print(
            f"{width:>6} {statistics.median(totals):>12.2f} {percentile(totals, 0.95):>12.2f} "
            f"{statistics.median(totals) / (width + 1) * 1000:>8.1f} "
            f"{statistics.median(delays):>18.1f} {percentile(delays, 0.95):>8.1f}"
        )
