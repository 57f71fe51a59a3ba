"""How long a workflow's orchestration takes, through a real Redis and a worker
with four processes:

- fan-outs of W parallel echo steps into one join step;
- chains of N echo steps, each depending on the one before: the step hop.

    scripts/bench.sh bench/workflow_fanout.py          # SQLite, then PostgreSQL (durable, as users run it)
    DB=postgres scripts/bench.sh bench/workflow_fanout.py -k chain
    make test DB=sqlite PYTEST_ARGS="bench/workflow_fanout.py -s"
    BENCH_WIDTHS=10,50,200 BENCH_CHAINS=1,2,4,8 BENCH_RUNS=10 ... to change the sizes

For each width it prints, over the runs: the whole workflow's time (trigger to
succeeded), the time per step, and the join delay (from the last parallel
step's end to the join step's start: locking the workflow run, seeing that all
its dependencies succeeded, resolving its params, publishing it, a worker
picking it up).

For each chain length: trigger to the last step's end, p50 and p99, and the
step hop (one step's end to the next one's start, as the runs record them),
p50 and p99 over every hop of every run. The last line is the slope of the
trigger-to-last-step p50s over the chain length (least squares): what each
step adds, its hop and its own run together. Numbers, not assertions: the
machine is shared and noisy.
"""

import os
import statistics
import sys
import time

if __name__ == "__main__":  # scripts/bench.sh runs it as a script, on a durable PostgreSQL too
    import pytest

    # Through pytest, which sets Django up before this module's imports below need it.
    sys.exit(pytest.main([__file__, "-s", "-q", "-p", "no:cacheprovider", *sys.argv[1:]]))

from jobs.models import Run
from tests.conftest import WORKFLOW_QUEUE, wait_for_run
from tests.e2e.test_execution import define, trigger

WIDTHS = [int(w) for w in os.environ.get("BENCH_WIDTHS", "10,50,200").split(",")]
CHAINS = [int(n) for n in os.environ.get("BENCH_CHAINS", "1,2,4,8").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "10"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def engine(settings) -> str:
    return settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]


def test_fan_out_timings(workflow_worker, api, settings):
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    print(f"\nworkflow fan-out, {engine(settings)}, worker concurrency 4, {RUNS} runs per width")
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


def slope(xs: list[float], ys: list[float]) -> float:
    """Least squares: how much y grows per unit of x (nan for a single point)."""
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def test_chain_timings(workflow_worker, api, settings):
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    load = os.getloadavg()[0]
    print(f"\nworkflow chains, {engine(settings)}, worker concurrency 4, {RUNS} runs per length")
    header = ("steps", "trigger→last step done p50 ms", "p99 ms", "step hop p50 ms", "hop p99 ms")
    print("{:>6} {:>30} {:>8} {:>16} {:>10}".format(*header))
    p50s = []
    for length in CHAINS:
        steps = [
            {"name": f"s{i}", "job_type": "echo", "params": {"i": i}, **({"depends_on": [f"s{i - 1}"]} if i else {})}
            for i in range(length)
        ]
        define(api, name=f"chain-{length}", kind="workflow", queue=WORKFLOW_QUEUE, steps=steps)
        wait_for_run(trigger(api, f"chain-{length}"), timeout=60)  # warm-up: the job type's first run
        totals, hops = [], []
        for _ in range(RUNS):
            started = time.time()
            run = wait_for_run(trigger(api, f"chain-{length}"), timeout=120)
            assert run.status == "succeeded", run.error
            times = {
                int(name[1:]): (begun, ended)
                for name, begun, ended in run.children.values_list("step_name", "started_at", "finished_at")
            }
            totals.append((times[length - 1][1].timestamp() - started) * 1000)
            hops += [(times[i + 1][0] - times[i][1]).total_seconds() * 1000 for i in range(length - 1)]
        p50s.append(statistics.median(totals))
        hop = f"{statistics.median(hops):>16.1f} {percentile(hops, 0.99):>10.1f}" if hops else f"{'':>16} {'':>10}"
        print(f"{length:>6} {statistics.median(totals):>30.1f} {percentile(totals, 0.99):>8.1f} {hop}")
    print(f"per step (slope of the p50s): {slope(CHAINS, p50s):.1f} ms; load average (1 min) {load:.2f} → "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
