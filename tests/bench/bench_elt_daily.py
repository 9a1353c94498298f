"""elt/daily in the running stack: trigger -> Completed over sequential runs that each do the whole
work, and where the seconds go.

    uv run python -m tests.bench.bench_elt_daily --runs 20     # or ./scripts/bench elt-daily

Starts a fresh copy of the checkout as its own compose project, runs elt/daily once to warm up
(first dbt workspace, page cache), then `--runs` runs one after the other, each with
full_refresh=true: the raw tables are dropped and reloaded and every dbt model and test is built
again (a run that reuses the cached dbt build does not count; the summary artifact of each run is
checked for "rebuilt"). Prints p50/p95 of trigger -> Completed and the median of each step:
  worker pick-up      created -> Pending (the worker's poll, then it submits the run)
  container create    Pending -> Docker's `create` event of the run's container
  container start     `create` -> `start`
  engine start        `start` -> Running (interpreter, imports, flow run and flow code loaded)
  flow setup          Running -> ingest task started (settings, warehouse lock)
  ingest              the ingest task (dlt: extract, normalize, load)
  transform           the transform task (the dbt build with its node task runs and artifacts)
  finish              transform end -> end (mart row counts, summary artifact, result, Completed)
The ML step that each Completed ELT triggers (customer-scores/after-elt: a fresh process importing
scikit-learn, ~15 s of CPU) would run beside the next ELT of the series, which a daily schedule never
does: its automation is switched off for the series unless --with-ml-step.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.measure import (
    MIB,
    FlowRunEvents,
    StackMemory,
    load,
    parse_time,
    polling,
    quantile,
    quantiles,
    remove_flow_runs,
    task_spans,
)
from tests.support.stack import PrefectApi, Stack, copy_checkout

DEPLOYMENT = ("elt", "daily")
FULL_WORK = {"full_refresh": True}
STEPS = (
    "worker pick-up",
    "container create",
    "container start",
    "engine start",
    "flow setup",
    "ingest",
    "transform",
    "finish",
)


def steps_of(api: PrefectApi, run: dict[str, Any], events: FlowRunEvents) -> dict[str, float]:
    states = {
        s["type"]: parse_time(s["timestamp"]) for s in api.get(f"/flow_run_states/?flow_run_id={run['id']}")
    }
    spans = task_spans(api, run["id"], ("ingest", "transform"))
    created, running, end = (
        parse_time(run["created"]),
        parse_time(run["start_time"]),
        parse_time(run["end_time"]),
    )
    docker_at = events.of(run["id"])
    pending = states.get("PENDING", running)
    create = docker_at.get("create", pending)
    start = docker_at.get("start", create)
    ingest, transform = spans["ingest"], spans["transform"]
    return {
        "worker pick-up": pending - created,
        "container create": create - pending,
        "container start": start - create,
        "engine start": running - start,
        "flow setup": ingest[0] - running,
        "ingest": ingest[1] - ingest[0],
        "transform": transform[1] - transform[0],
        "finish": end - transform[1],
        "total": end - created,
        "container exit": docker_at.get("die", end) - end,
    }


def rebuilt(api: PrefectApi, run_id: str) -> bool:
    """The run's summary artifact says the dbt build ran (not reused from the cache)."""
    return any("rebuilt" in (a.get("data") or "") for a in api.artifacts(run_id))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--with-ml-step",
        action="store_true",
        help="keep the ML step each ELT triggers (it overlaps the next)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-bench-elt-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        stack = Stack(root)
        try:
            stack.up()
            print(f"elt/daily, full work per run ({load()} at start)")
            with (
                stack.client() as http,
                polling(StackMemory(stack.project)) as memory,
                polling(FlowRunEvents()) as events,
            ):
                api = PrefectApi(http)
                if not args.with_ml_step:
                    print("the ML step after each ELT switched off (--with-ml-step keeps it)")
                    api.switch_off_triggers_of("customer-scores", "after-elt")
                warm = api.wait(api.trigger(*DEPLOYMENT, FULL_WORK), timeout=600)
                print(f"warm-up run: {warm['state_type']}, {warm['total_run_time']:.1f} s running")
                rows, failed, cached = [], 0, 0
                for _ in range(args.runs):
                    run = api.wait(api.trigger(*DEPLOYMENT, FULL_WORK), timeout=600)
                    if run["state_type"] != "COMPLETED":
                        failed += 1
                        continue
                    cached += not rebuilt(api, run["id"])
                    rows.append(steps_of(api, run, events))
            print(
                f"{len(rows)} runs Completed, {failed} not, {cached} reused the dbt build ({load()} at end)"
            )
            if not rows:
                return
            print(f"  trigger -> Completed  {quantiles([r['total'] for r in rows])}")
            print("  where the seconds go (median of each step, s):")
            for step in (*STEPS, "container exit"):
                values = [r[step] for r in rows]
                print(
                    f"    {step:<18} {statistics.median(values):6.2f}   (p95 {quantile(values, 0.95):6.2f})"
                )
            print(
                f"    {'sum of medians':<18} {sum(statistics.median(r[s] for r in rows) for s in STEPS):6.2f}"
            )
            peaks = ", ".join(
                f"{name} {used / MIB:.0f}" for name, used in sorted(memory.peak_by_name.items())
            )
            print(f"  peak memory: stack {memory.peak_total / MIB:.0f} MiB at one moment; {peaks} MiB")
        finally:
            remove_flow_runs(stack.project)
            stack.down()


if __name__ == "__main__":
    main()
