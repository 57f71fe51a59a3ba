#!/usr/bin/env python
"""Run every benchmark in bench/ with sizes that fit a few minutes, and write
BENCHMARKS.md: each benchmark's table, its goal and whether it holds, the
machine and the date. Called by `make bench` (scripts/bench-all.sh), which
starts the throwaway PostgreSQL in DATABASE_URL; without DATABASE_URL only the
SQLite runs happen.

Everything from the line PROSE_MARKER on is hand-written (how to run each
benchmark at full size, the figures measured so far and what they mean): it is
kept as it is when the generated part above it is written again.

With `--only`, the benchmarks not run keep their tables and goal rows from
the existing report, and its header says what was measured again and when.

    scripts/bench_report.py [--only throughput latency ...] [--output BENCHMARKS.md]
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLITE, POSTGRES = "SQLite", "PostgreSQL"
PROSE_MARKER = "<!-- prose below is kept by bench_report.py -->"

Rows = list[dict[str, str]]


def number(text: str) -> float:
    """The first number in a table cell ("1,234.5 / 6" → 1234.5)."""
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    if match is None:
        raise ValueError(f"no number in {text!r}")
    return float(match.group().replace(",", ""))


def numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)]


@dataclass
class Goal:
    text: str
    # Whether the goal holds for this database's rows; None where it does not apply.
    check: Callable[[str, Rows], bool | None]
    # The columns the goal is about, shown beside the verdict.
    columns: tuple[str, ...] = ()
    # The verdict where `check` says None.
    not_judged: str = "for reference (the goal is set for PostgreSQL)"


@dataclass
class Bench:
    name: str
    command: list[str]
    databases: tuple[str, ...]
    goals: list[Goal] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    parse: Callable[[str], Rows] | None = None
    note: str = ""
    # Arguments added on one database only (e.g. a size).
    per_database: dict[str, list[str]] = field(default_factory=dict)

    def command_for(self, database: str) -> list[str]:
        return [*self.command, *self.per_database.get(database, [])]


def markdown_rows(output: str) -> Rows:
    """The data rows of the last Markdown table printed, by header."""
    tables, current = [], []
    for line in output.splitlines():
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    if not tables:
        return []
    header, *body = tables[-1]
    return [dict(zip(header, row, strict=False)) for row in body if not set("".join(row)) <= set("-: ")]


def fanout_rows(output: str) -> Rows:
    """bench/workflow_fanout.py prints a whitespace-aligned table under pytest."""
    rows, header = [], None
    for line in output.splitlines():
        if line.strip().startswith("width"):
            header = ["width", "total p50 s", "total p95 s", "ms/step", "join delay p50 ms", "join delay p95 ms"]
        elif header and re.fullmatch(r"\s*\d+(\s+[\d.]+){5}\s*", line):
            rows.append(dict(zip(header, line.split(), strict=True)))
    return rows


def chain_rows(output: str) -> Rows:
    """bench/workflow_fanout.py's chain table (under pytest): steps, trigger→last step done, step hop."""
    header = ["steps", "trigger→last step done p50 ms", "p99 ms", "step hop p50 ms", "hop p99 ms"]
    rows = []
    for line in output.splitlines():
        cells = line.split()
        if len(cells) in (3, 5) and all(re.fullmatch(r"[\d.]+", cell) for cell in cells):
            rows.append(dict(zip(header, cells + ["—", "—"] * (len(cells) == 3), strict=True)))
    return rows


def hop_fast(database: str, rows: Rows) -> bool | None:
    if database != POSTGRES:
        return None
    hops = [number(r["step hop p50 ms"]) for r in rows if r["step hop p50 ms"] != "—"]
    return bool(hops) and statistics.median(hops) <= 10


def throughput_ratio(database: str, rows: Rows) -> bool | None:
    if database != POSTGRES:
        return None
    return all(number(r["ratio"]) >= 0.8 for r in rows)


def bulk_ratio(database: str, rows: Rows) -> bool | None:
    return all(number(r["ratio"]) >= 1.0 for r in rows)


def memory_flat(database: str, rows: Rows) -> bool | None:
    """Judged on the rows that measured it: bench/throughput.py writes a dash (and why)
    where its rounds are too short for a growth after job 1,000 to mean anything."""
    measured = [r["Jobsite pool growth %"] for r in rows if not r["Jobsite pool growth %"].startswith("—")]
    return all(abs(number(growth)) <= 10 for growth in measured) if measured else None


def latency_ratio(database: str, rows: Rows) -> bool | None:
    return all(number(r["ratio of p50s"]) <= 1.5 for r in rows)


def schedules_hold(database: str, rows: Rows) -> bool | None:
    jobsite = [r for r in rows if r["mode"] == "jobsite"]
    return all(
        number(r["missed"]) == 0
        and number(r["duplicates"]) == 0
        and number(r["not published / not started at the end"]) == 0
        and (numbers(r["published late p50 / p99 / max (s)"]) or [0, float("inf")])[1] < 5
        and number(r["new schedule picked up (s)"]) <= 10
        for r in jobsite
    )


def nothing_lost(lost: str, twice: str) -> Callable[[str, Rows], bool]:
    return lambda database, rows: all(number(r[lost]) == 0 and number(r[twice]) == 0 for r in rows)


def pages_flat(database: str, rows: Rows) -> bool | None:
    return all(number(r["ratio"]) <= 1.5 for r in rows)


def python() -> str:
    return sys.executable


BENCHES = [
    Bench(
        "throughput",
        [python(), "bench/throughput.py"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "Jobsite ≥ 0.8x plain Celery's jobs/s, same result backend (on PostgreSQL)",
                throughput_ratio,
                ("plain Celery jobs/s", "Jobsite jobs/s", "ratio", "ratio per round pair"),
            ),
            Goal(
                "worker pool memory within 10% from job 1,000 to the last",
                memory_flat,
                ("pool MiB at 1,000 → end, Jobsite", "Jobsite pool growth %"),
                not_judged="not measured: rounds under 2,000 jobs (see the table)",
            ),
        ],
        per_database={SQLITE: ["--runs", "3000", "--rounds", "4"], POSTGRES: ["--runs", "10000", "--rounds", "4"]},
        note="10,000 jobs on PostgreSQL (where the goals are set), 3,000 on SQLite to save time; "
        "`bench/throughput.py --runs 10000` on SQLite too (below the tables). Each side's jobs in four rounds, "
        "alternating with the other side's (Celery, Jobsite, Jobsite, Celery, Celery, Jobsite, Jobsite, Celery; "
        "each round a fresh database, Redis and worker), so that the machine's drift over minutes hits both; "
        "jobs/s is each side's jobs over its seconds in all, and the pool growth is its worst round's, not "
        "measured in rounds under 2,000 jobs (SQLite's 750 here).",
    ),
    Bench(
        "bulk",
        [python(), "bench/throughput.py", "--bulk"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "Jobsite bulk triggers ≥ 1.0x plain Celery's jobs/s end to end, same result backend",
                bulk_ratio,
                (
                    "plain Celery jobs/s",
                    "Jobsite bulk jobs/s",
                    "ratio",
                    "ratio per round pair",
                    "triggered per second (Celery / Jobsite bulk)",
                    "first job ended after, ms (Celery / Jobsite bulk)",
                ),
            ),
        ],
        per_database={SQLITE: ["--runs", "40000", "--rounds", "4"], POSTGRES: ["--runs", "40000", "--rounds", "4"]},
        note="Runs through the bulk trigger service (`runs_create_many`, what POST /api/v1/job-types/{name}/runs/bulk/ "
        "calls), JOBS_BULK_MAX_RUNS per call. Each round is the goal's batch, 10,000 jobs triggered at once and "
        "waited for to the last; four rounds a side, alternating as for throughput. A bulk trigger checks and "
        "writes a call's runs before it publishes any, so its first job ends later than a send_task loop's "
        "(the 'first job ended after' column): in rounds of 2,500 that start weighed four times what it does "
        "in the goal's batch.",
    ),
    Bench(
        "latency",
        [python(), "bench/latency.py", "--runs", "100"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "Jobsite trigger→start p50 ≤ 1.5x Celery's publish→start p50",
                latency_ratio,
                (
                    "Jobsite trigger→start p50 / p99 (ms)",
                    "Celery publish→start p50 / p99 (ms)",
                    "ratio of p50s",
                    "trigger service→start p50 / p99 (ms)",
                    "ratio of p50s, from the trigger service",
                ),
            )
        ],
    ),
    Bench(
        "schedules",
        [python(), "bench/schedules.py", "--schedules", "1000", "--minutes", "1", "--mode", "jobsite"],
        (SQLITE,),
        [
            Goal(
                "Jobsite: 0 missed, 0 duplicates, every tick published with p99 lateness < 5 s, edit picked up ≤ 10 s",
                schedules_hold,
                (
                    "mode",
                    "missed",
                    "duplicates",
                    "published late p50 / p99 / max (s)",
                    "not published / not started at the end",
                    "new schedule picked up (s)",
                ),
            )
        ],
        note="Jobsite's dispatcher only, 1,000 schedules for 1 minute here; the 10,000-schedule goal and "
        "stock beat beside it need `bench/schedules.py --schedules 1000 10000 --minutes 3` (below the tables).",
    ),
    Bench(
        "load",
        [python(), "bench/load.py", "--runs", "500", "--clients", "10"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "every accepted run completed: 0 lost, 0 duplicated",
                nothing_lost("lost", "duplicated"),
                ("lost", "duplicated"),
            )
        ],
    ),
    Bench(
        "broker_outage",
        [python(), "bench/broker_outage.py", "--runs", "30", "--hung", "2"],
        (SQLITE,),
        [Goal("no run lost, none ran twice", nothing_lost("lost", "ran twice"), ("lost", "ran twice"))],
    ),
    Bench(
        "monitor_scale",
        [python(), "bench/monitor_scale.py", "--sizes", "1000,100000", "--repeat", "5"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "every page and API list at the larger size within 1.5x its time at the smaller",
                pages_flat,
                ("page", "ratio"),
            )
        ],
        note="1,000 vs 100,000 runs here; `make bench-monitor` loads 1,000,000.",
    ),
    Bench(
        "workflow_fanout",
        [python(), "-m", "pytest", "bench/workflow_fanout.py", "-k", "fan_out", "-s", "-q", "-p", "no:cacheprovider"],
        (SQLITE,),
        env={"BENCH_WIDTHS": "10,50", "BENCH_RUNS": "3"},
        parse=fanout_rows,
        note="figures only (the issue sets no goal)",
    ),
    Bench(
        "workflow_chain",
        [python(), "-m", "pytest", "bench/workflow_fanout.py", "-k", "chain", "-s", "-q", "-p", "no:cacheprovider"],
        (SQLITE, POSTGRES),
        [
            Goal(
                "step hop p50 ≤ 10 ms (PostgreSQL): the median of the chains' hop p50s",
                hop_fast,
                ("steps", "step hop p50 ms", "hop p99 ms"),
            )
        ],
        env={"BENCH_CHAINS": "1,2,4,8", "BENCH_RUNS": "10"},
        parse=chain_rows,
        note="chains of 1, 2, 4 and 8 echo steps, each depending on the one before, a worker with 4 processes: "
        "trigger to the last step's end, and the step hop (one step's end to the next one's start).",
    ),
    Bench(
        "peers",
        [python(), "bench/peers.py", "--runs", "100", "--throughput", "1000"],
        (SQLITE,),
        note="figures only (the issue sets no goal): Jobsite beside celery-director 0.10, each on a fresh "
        "database of the same kind, one after the other; the last row divides Jobsite's figure by Director's. "
        "SQLite here (Director's own default); `scripts/bench.sh bench/peers.py` adds PostgreSQL (below the tables).",
    ),
    Bench(
        "purge",
        [python(), "bench/purge.py", "--runs", "20000"],
        (SQLITE, POSTGRES),
        note="figures only (the issue sets no goal; below the tables: about 0.2 to 0.3 s per batch at 200,000 runs)",
    ),
]


def machine() -> dict[str, str]:
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cores": f"{os.cpu_count()} ({model})",
        "RAM": f"{int(memory) / 2**20:.1f} GiB",
        "Python": platform.python_version(),
        "kernel": platform.release(),
    }


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Outcome:
    bench: Bench
    database: str
    rows: Rows
    output: str
    seconds: float
    load_before: str
    load_after: str
    failed: str = ""


def run(bench: Bench, database: str) -> Outcome:
    env = {**os.environ, **bench.env, "PYTHONUNBUFFERED": "1"}
    if database == SQLITE:
        env.pop("DATABASE_URL", None)
    command = bench.command_for(database)
    print(f"==> {bench.name} on {database}: {shown(command)}", file=sys.stderr, flush=True)
    load_before, started = load_average(), time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    output = done.stdout
    rows = (bench.parse or markdown_rows)(output)
    failed = ""
    if done.returncode != 0 or not rows:
        failed = f"exit {done.returncode}: {(done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']}"
        print(done.stdout[-2000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    print(output.strip(), f"({seconds:.0f} s)", file=sys.stderr, sep="\n", flush=True)
    return Outcome(bench, database, rows, output, seconds, load_before, load_after=load_average(), failed=failed)


def table(rows: Rows, database: str) -> list[str]:
    header = ["db", *rows[0].keys()] if "db" not in rows[0] and "database" not in rows[0] else list(rows[0].keys())
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    for row in rows:
        cells = [database if key == "db" and "db" not in row else row.get(key, "") for key in header]
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def verdict(goal: Goal, outcome: Outcome) -> str:
    if outcome.failed:
        return "not measured (the benchmark failed)"
    try:
        holds = goal.check(outcome.database, outcome.rows)
    except (KeyError, ValueError, IndexError) as exc:
        return f"unknown (could not read the table: {exc})"
    if holds is None:
        return goal.not_judged
    return "**holds**" if holds else "**does not hold**"


def measured(goal: Goal, outcome: Outcome) -> str:
    """The goal's columns of each row, e.g. "ratio 0.91"; the worst page only for long tables."""
    rows = outcome.rows
    if goal.check is pages_flat and rows:
        rows = [max(rows, key=lambda row: number(row.get("ratio", "0")))]
    return "; ".join(", ".join(f"{c} {row.get(c, '?')}" for c in goal.columns) for row in rows) or "—"


def shown(command: list[str]) -> str:
    return " ".join("python" if part == sys.executable else part for part in command)


@dataclass
class Previous:
    """The generated part of an earlier report, for a run of some benchmarks only (`--only`)."""

    header: list[str]  # the title, the paragraph and the machine table
    goals: dict[str, list[str]]  # goal rows by benchmark name
    sections: dict[str, list[str]]  # "## name" sections by benchmark name

    @classmethod
    def read(cls, path: Path) -> "Previous | None":
        if not path.exists():
            return None
        text = path.read_text()
        generated = text.split(PROSE_MARKER, 1)[0]
        parts = re.split(r"^## ", generated, flags=re.MULTILINE)
        if len(parts) < 2 or not parts[1].startswith("Goals"):
            return None
        goals: dict[str, list[str]] = {}
        for line in parts[1].splitlines()[1:]:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[0] not in ("benchmark", "---"):
                goals.setdefault(cells[0], []).append(line)
        sections = {part.splitlines()[0].strip(): ("## " + part).rstrip().splitlines() for part in parts[2:]}
        return cls(header=parts[0].rstrip().splitlines(), goals=goals, sections=sections)


def report(outcomes: list[Outcome], started: datetime, total_seconds: float, previous: Previous | None = None) -> str:
    """The generated part of BENCHMARKS.md. With `previous` (a run of some benchmarks only),
    the other benchmarks' goal rows and sections are kept from it, and so is its header,
    with a line saying what was measured again and when."""
    ran_names = {outcome.bench.name for outcome in outcomes}
    if previous is not None:
        # An earlier "measured again" line for these benchmarks only is out of date now.
        stale = re.compile(r"^Measured again .* with `--only ([^`]*)`")
        kept = [
            line
            for line in previous.header
            if not ((match := stale.match(line)) and set(match.group(1).split()) <= ran_names)
        ]
        while kept and not kept[-1].strip():
            kept.pop()
        lines = [
            *kept,
            "",
            f"Measured again on {started:%Y-%m-%d %H:%M} UTC in {total_seconds / 60:.1f} min with "
            f"`--only {' '.join(sorted(ran_names))}` (load average at the start "
            f"{outcomes[0].load_before if outcomes else load_average()}); the other tables are from before.",
            "",
            "## Goals",
            "",
            "| benchmark | database | goal | measured | verdict |",
            "|---|---|---|---|---|",
        ]
    else:
        lines = header(outcomes, started, total_seconds)
    for bench in BENCHES:
        if bench.name not in ran_names:
            lines += previous.goals.get(bench.name, []) if previous else []
        for outcome in (o for o in outcomes if o.bench is bench):
            for goal in outcome.bench.goals:
                lines.append(
                    f"| {outcome.bench.name} | {outcome.database} | {goal.text} | {measured(goal, outcome)} "
                    f"| {verdict(goal, outcome)} |"
                )
    for bench in BENCHES:
        ran = [o for o in outcomes if o.bench is bench]
        if not ran:
            if previous and bench.name in previous.sections:
                lines += ["", *previous.sections[bench.name]]
            continue
        lines += ["", f"## {bench.name}", "", f"`{shown(bench.command)}`"]
        if bench.env:
            lines[-1] += " with " + ", ".join(f"`{k}={v}`" for k, v in bench.env.items())
        if bench.note:
            lines += ["", bench.note]
        for outcome in ran:
            extra = " ".join(bench.per_database.get(outcome.database, []))
            label = f"{outcome.database} (`{extra}`)" if extra else outcome.database
            lines += [
                "",
                f"{label}: {outcome.seconds:.0f} s, load average {outcome.load_before} before, "
                f"{outcome.load_after} after.",
                "",
            ]
            lines += [f"Failed: {outcome.failed}"] if outcome.failed else table(outcome.rows, outcome.database)
    return "\n".join(lines) + "\n"


def header(outcomes: list[Outcome], started: datetime, total_seconds: float) -> list[str]:
    info = machine()
    return [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {started:%Y-%m-%d %H:%M} UTC in {total_seconds / 60:.1f} min. "
        "Small sizes, so that all of it fits a few minutes; each script runs alone with larger "
        "ones ([Running the benchmarks](#running-the-benchmarks), below the tables). The machine is "
        "shared: other work may have run at the same time (see the load averages), so compare figures "
        "within a row, not across runs.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        f"| load average (1 / 5 / 15 min) at the start | {outcomes[0].load_before if outcomes else load_average()} |",
        "",
        "## Goals",
        "",
        "| benchmark | database | goal | measured | verdict |",
        "|---|---|---|---|---|",
    ]


def kept_prose(path: Path) -> str:
    """The hand-written part of an existing report: the marker line and everything after it."""
    if not path.exists():
        return ""
    text = path.read_text()
    match = re.search(rf"^{re.escape(PROSE_MARKER)}$", text, flags=re.MULTILINE)
    return text[match.start() :] if match else ""


def write(path: Path, generated: str) -> None:
    """Write the generated report to path, followed by the hand-written part of the file it
    replaces (or, for a new file, of the checkout's BENCHMARKS.md)."""
    prose = kept_prose(path) or kept_prose(ROOT / "BENCHMARKS.md")
    path.write_text(generated + ("\n" + prose if prose else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these benchmarks")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    databases = [SQLITE] + ([POSTGRES] if os.environ.get("DATABASE_URL", "").startswith("postgres") else [])
    started, clock = datetime.now(UTC), time.monotonic()
    outcomes = [
        run(bench, database)
        for bench in BENCHES
        if not args.only or bench.name in args.only
        for database in bench.databases
        if database in databases
    ]
    # A run of some benchmarks keeps the others' tables (from --output, else the checkout's file).
    previous = (Previous.read(args.output) or Previous.read(ROOT / "BENCHMARKS.md")) if args.only else None
    write(args.output, report(outcomes, started, time.monotonic() - clock, previous))
    print(f"wrote {args.output}", file=sys.stderr)
    if any(outcome.failed for outcome in outcomes):
        sys.exit("some benchmarks failed: see above and " + str(args.output))


if __name__ == "__main__":
    main()
