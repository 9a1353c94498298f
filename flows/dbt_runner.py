"""One dbt command, run in this process, with every node a Prefect task run (models, seeds and
snapshots also assets), at close to bare dbt's speed.

dbt runs exactly as `dbt build` would: one invocation, its own threads and scheduling. It reports
what happens through its event callbacks, and each node's NodeStart and NodeFinished become that
node's task run going Running (once it has run a second) and then Completed, Failed or Skipped.
They are sent as the same `prefect.task-run.*` events Prefect's own task engine sends (the server
records task runs from them), together with the asset events of a materializing task and the
node's log lines. Nothing waits on the API per node: events and logs go to Prefect's background
workers.

Why not prefect-dbt's PrefectDbtRunner: it starts a thread per node that runs Prefect's whole task
engine, and each builds a new API client (TLS context, settings read from the profile file) and
re-creates the flow's context; on 2 cores that costs about 0.15 s per node, 5-6x bare dbt on a
200-model project. Here the project is parsed once (partially, with target/ kept under DATA_DIR)
and the command reuses that manifest instead of parsing again.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

FAILED = frozenset({"error", "fail", "runtime error"})
SKIPPED = frozenset({"skipped"})
MATERIALIZED = frozenset({"model", "seed", "snapshot"})
LOG_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# How often the reporting thread sends what dbt's threads queued: late enough to batch a few nodes,
# soon enough that the UI follows the build live.
REPORT_SECONDS = 0.25
# A node's task run shows Running once the node has run this long; one that ends sooner goes
# straight to its final state (with its start time). Most nodes take less, and each state is an
# event the server records beside dbt's threads (a 200-model build's 601 nodes: 6-7 s of the
# server's and Postgres' CPU on 2 cores, with the stack's batched task-run recorder).
RUNNING_AFTER_SECONDS = 1.0


class DbtRunError(RuntimeError):
    """dbt failed: a node failed (named in the message), or the project could not be parsed or run.

    Not a PermanentError: a lost warehouse connection is worth a retry, a failing test is not;
    flows/retry.py decides from the message, which carries dbt's own.
    """


@dataclass(frozen=True)
class DbtInvocation:
    """Where and against what one dbt command runs."""

    project_dir: Path
    profiles_dir: Path
    profile: str
    target: str
    run_dir: Path  # target/ and logs/ go here
    vars: Mapping[str, Any] | None = None
    name: str = ""  # the project's name, for messages (project_dir is its workspace)

    @property
    def project(self) -> str:
        return self.name or self.project_dir.name

    def flags(self) -> list[str]:
        flags = [
            "--project-dir", str(self.project_dir),
            "--profiles-dir", str(self.profiles_dir),
            "--profile", self.profile,
            "--target", self.target,
            "--target-path", str(self.run_dir / "target"),
            "--log-path", str(self.run_dir / "logs"),
        ]  # fmt: skip
        if self.vars:
            flags += ["--vars", json.dumps(dict(self.vars))]
        return flags


@dataclass
class DbtOutcome:
    """What one command did: node statuses, failed nodes, the parsed project, and timings."""

    command: str
    statuses: Counter[str]
    failures: list[str]
    manifest: Any
    parse_seconds: float
    run_seconds: float
    task_runs: int = 0
    publish_seconds: float = 0.0  # what follows the command (the docs page: flows/dbt_outputs.py)

    @property
    def success(self) -> bool:
        return not self.failures


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets variables for dbt (profiles read them with env_var) and restores them after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _global_flags() -> list[str]:
    # dbt's console output is off: its lines reach the console and the UI as Prefect log records
    # (without ANSI colours). dbt's own log file (logs/dbt.log, debug level) is kept, as with bare
    # dbt: it holds the SQL each node ran. (--log-level none alone would turn it off too.)
    return ["--no-use-colors", "--log-level", "none", "--log-level-file", "debug"]


def parse_project(invocation: DbtInvocation) -> tuple[Any, float]:
    """dbt's manifest of the project (partial parsing against the kept target/), and seconds taken."""
    from dbt.cli.main import dbtRunner

    logger = run_logger()
    started = time.perf_counter()
    result = dbtRunner(callbacks=[ProjectLog(logger)]).invoke(
        [*_global_flags(), "parse", *invocation.flags()]
    )
    if not result.success:
        raise DbtRunError(f"dbt could not parse the project {invocation.project}: {result.exception}")
    return result.result, time.perf_counter() - started


def run_deps(project_dir: Path, log_dir: Path) -> None:
    """`dbt deps` of a project, its messages in the run's log; fails saying what packages need."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner(callbacks=[ProjectLog(run_logger())]).invoke(
        [*_global_flags(), "deps", "--project-dir", str(project_dir), "--log-path", str(log_dir)]
    )
    if not result.success:
        raise DbtRunError(
            # The workspace's project/ folder sits in a folder named after the project.
            f"dbt deps failed for the project {project_dir.parent.name}: {result.exception}. Hub and git "
            "packages need network access from the flow run (local: packages do not): check its packages.yml."
        )


def run_dbt(invocation: DbtInvocation, command: str, options: Sequence[str] = ()) -> DbtOutcome:
    """Runs ``dbt <command> <options>``; raises DbtRunError naming every failed node."""
    from dbt.cli.main import dbtRunner

    manifest, parse_seconds = parse_project(invocation)
    reporter = NodeTaskReporter(manifest)
    started = time.perf_counter()
    try:
        result = dbtRunner(manifest=manifest, callbacks=[reporter.on_event]).invoke(
            [*_global_flags(), command, *invocation.flags(), *options]
        )
    finally:
        reporter.close()
    run_seconds = time.perf_counter() - started
    results = list(getattr(result.result, "results", None) or [])
    statuses = Counter(str(r.status) for r in results)
    failures = [
        f"{r.node.resource_type} {r.node.name} ({r.status}): {(r.message or '').strip()}"
        for r in results
        if str(r.status) in FAILED
    ]
    project = invocation.project
    if result.exception is not None and not failures:
        raise DbtRunError(f"dbt {command} of project {project} failed: {result.exception}")
    if failures:
        skipped = statuses.get("skipped", 0)
        raise DbtRunError(
            f"dbt {command} of project {project} failed: {len(failures)} of {len(results)} nodes failed"
            + (f", {skipped} skipped" if skipped else "")
            + ":\n"
            + "\n".join(failures)
        )
    return DbtOutcome(command, statuses, failures, manifest, parse_seconds, run_seconds, reporter.task_runs)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows.dbt")


class ProjectLog:
    """dbt's messages of INFO and above, outside any node (parse, summary), to the run's log."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self.logger = logger

    def __call__(self, event: Any) -> None:
        level = LOG_LEVELS.get(event.info.level)
        if level is not None and event.info.msg:
            self.logger.log(level, event.info.msg)


def asset_key(adapter_type: str, relation_name: str) -> str:
    """A relation's asset key, as prefect-dbt makes it (format_resource_id), e.g. duckdb://db/schema/table.

    Restated rather than imported: importing prefect_dbt costs about 0.4 s per run; a test keeps
    the two equal.
    """
    from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

    key = relation_name.replace('"', "").replace(".", "/")
    for char in RESTRICTED_ASSET_CHARACTERS:
        key = key.replace(char, "")
    return f"{adapter_type}://{key}"[:MAX_ASSET_KEY_LENGTH]


def asset_name(relation_name: str) -> str:
    """A relation's display name without quoting, as prefect-dbt's format_asset_name."""
    return relation_name.replace('"', "").replace("`", "")


_NODE_LOGGER = "flows.dbt.nodes"


def node_logger() -> logging.Logger:
    """The logger of dbt's per-node lines: Prefect's API handler (the run's logs in the UI) and a
    plain stream handler in Prefect's console format.

    Prefect's console handler renders every line with rich, about 0.6 ms a line on 2 cores: most
    of what reporting a node cost (a 200-model build logs 1,200 lines). The text is the same.
    """
    logger = logging.getLogger(_NODE_LOGGER)
    if not logger.handlers:
        from prefect.logging.handlers import APILogHandler

        task_runs = logging.getLogger("prefect.task_runs").handlers
        logger.handlers = [h for h in task_runs if isinstance(h, APILogHandler)]
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
                datefmt="%H:%M:%S",
            )
        )
        logger.addHandler(console)
        logger.propagate = False
    # The level Prefect's task-run loggers log at (PREFECT_LOGGING_LEVEL, INFO by default).
    logger.setLevel(logging.getLogger("prefect.task_runs").getEffectiveLevel())
    return logger


def _timestamp(value: str) -> datetime:
    """dbt's ISO timestamps (UTC, naive or with Z); now if missing."""
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _Node:
    """One node's task run as it goes: its id, name, upstream task runs and last event."""

    unique_id: str
    task_run_id: UUID
    name: str
    resource_type: str
    manifest_node: Any
    started: datetime | None = None
    seen_started: float = 0.0  # time.monotonic() when the reporter got its NodeStart
    running_reported: bool = False
    last_event: Any = None
    logger: Any = None
    finished: bool = False
    upstream: list[UUID] = field(default_factory=list)


class NodeTaskReporter:
    """dbt event callback that turns nodes into task runs, asset events and log lines.

    dbt calls ``on_event`` from its worker threads for every event: it only queues the few that
    matter and returns. One reporting thread, running in a copy of the calling flow's context (so
    Prefect relates the events to the flow run, deployment, work pool and tags as it does its
    own), sends them every REPORT_SECONDS in a burst. Batching keeps Prefect's background senders
    from waking, and taking the GIL from dbt's threads, once per event. A node's task run is sent
    once when it ends within RUNNING_AFTER_SECONDS, else Running and then its final state. Outside
    a flow run only the log lines are reported (to the run logger's handlers).
    """

    def __init__(self, manifest: Any) -> None:
        from prefect.context import FlowRunContext, TagsContext, TaskRunContext

        self.manifest = manifest
        self.adapter_type = manifest.metadata.adapter_type or "dbt"
        flow_context = FlowRunContext.get()
        self.flow_run = flow_context.flow_run if flow_context else None
        self.flow_name = flow_context.flow.name if flow_context and flow_context.flow else "<unknown>"
        task_context = TaskRunContext.get()
        self.parent_task_run = task_context.task_run if task_context else None
        tags = set(TagsContext.get().current_tags)
        if self.parent_task_run is not None:
            tags |= set(self.parent_task_run.tags)
        self.tags = sorted(tags)
        self.context = contextvars.copy_context()
        # Unique per invocation: the same node run again (a retry, a second command) is a new task run.
        self.invocation = uuid4().hex[:8]
        self.nodes: dict[str, _Node] = {}
        self.running: dict[str, _Node] = {}  # started, not finished, not yet reported Running
        self.running_after = RUNNING_AFTER_SECONDS
        self.assets: dict[str, Any] = {}
        self.run_logger = run_logger()
        self.reporting_failed = False
        self.pending: deque[Any] = deque()  # appended by dbt's threads, drained by the reporter
        self.materialized: list[tuple[_Node, Any, bool, datetime]] = []  # asset events, sent at close
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self.context.run, args=(self._report,), name="dbt-node-reporter", daemon=True
        )
        self.thread.start()

    @property
    def enabled(self) -> bool:
        return self.flow_run is not None

    @property
    def task_runs(self) -> int:
        """Nodes reported as task runs (each started or finished)."""
        return sum(1 for node in list(self.nodes.values()) if node.started is not None)

    # --- dbt's callback (its worker threads) and the reporting thread ------------------------------

    def on_event(self, event: Any) -> None:
        name = event.info.name
        if name in ("NodeStart", "NodeFinished") or (event.info.level in LOG_LEVELS and event.info.msg):
            self.pending.append(event)  # deque.append is atomic: no lock, no wake-up

    def _report(self) -> None:
        while not self.stopped.wait(REPORT_SECONDS):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        batch = [self.pending.popleft() for _ in range(len(self.pending))]
        for event in batch:
            try:
                name = event.info.name
                if name == "NodeStart":
                    if self.enabled:
                        self._started(event)
                elif name == "NodeFinished":
                    if self.enabled:
                        self._finished(event)
                else:
                    self._log(event, LOG_LEVELS[event.info.level])
            except Exception:  # reporting must never break the dbt run it reports on
                self._reporting_failed()
        try:
            self._report_running()
        except Exception:
            self._reporting_failed()

    def _reporting_failed(self) -> None:
        if not self.reporting_failed:
            self.reporting_failed = True
            self.run_logger.warning("Reporting dbt's nodes to Prefect failed", exc_info=True)

    def _report_running(self) -> None:
        """Running for the nodes that have now run RUNNING_AFTER_SECONDS without finishing."""
        from prefect.states import Running

        now = time.monotonic()
        for unique_id, node in list(self.running.items()):
            if now - node.seen_started >= self.running_after:
                self._emit_state(node, Running(timestamp=node.started), None)
                node.running_reported = True
                del self.running[unique_id]

    def _log(self, event: Any, level: int) -> None:
        """A dbt line as a log record of its node's task run (else of the run), at dbt's time."""
        info = getattr(event.data, "node_info", None)  # a field of node events only
        if info is not None and info.unique_id and self.enabled:
            adapter = self._node(info.unique_id, info).logger
        else:
            adapter = self.run_logger
        logger = getattr(adapter, "logger", adapter)
        if not logger.isEnabledFor(level):
            return
        extra = getattr(adapter, "extra", None)
        record = logger.makeRecord(logger.name, level, "dbt", 0, event.info.msg, None, None, extra=extra)
        record.created = event.info.ts.seconds + event.info.ts.nanos / 1e9
        record.msecs = (event.info.ts.nanos // 1_000_000) % 1000
        logger.handle(record)

    # --- nodes -----------------------------------------------------------------------------------

    def _node(self, unique_id: str, info: Any) -> _Node:
        node = self.nodes.get(unique_id)
        if node is not None:
            return node
        from prefect._internal.uuid7 import uuid7
        from prefect.logging.loggers import PrefectLogAdapter

        manifest_node = self.manifest.nodes.get(unique_id) or getattr(self.manifest, "unit_tests", {}).get(
            unique_id
        )
        resource_type = str(info.resource_type or getattr(manifest_node, "resource_type", "node"))
        name = f"{resource_type.lower()} {info.node_name or unique_id}"
        node = _Node(unique_id, uuid7(), name, resource_type.lower(), manifest_node)
        node.logger = PrefectLogAdapter(
            node_logger(),
            extra={
                "task_run_id": node.task_run_id,
                "flow_run_id": str(self.flow_run.id) if self.flow_run else None,
                "task_run_name": name,
                "task_name": "dbt",
                "flow_run_name": self.flow_run.name if self.flow_run else "<unknown>",
                "flow_name": self.flow_name,
            },
        )
        depends_on = getattr(getattr(manifest_node, "depends_on", None), "nodes", None) or []
        node.upstream = [self.nodes[d].task_run_id for d in depends_on if d in self.nodes]
        self.nodes[unique_id] = node
        return node

    def _task_run(self, node: _Node, state: Any) -> Any:
        from prefect.client.schemas.objects import TaskRun, TaskRunResult

        inputs: dict[str, list[Any]] = {}
        if node.upstream:
            inputs["wait_for"] = [TaskRunResult(id=i) for i in node.upstream]
        if self.parent_task_run is not None:
            inputs["__parents__"] = [TaskRunResult(id=self.parent_task_run.id)]
        end = state.timestamp if state.is_final() else None
        return TaskRun(
            id=node.task_run_id,
            name=node.name,
            flow_run_id=self.flow_run.id,
            task_key=f"dbt-{node.unique_id}",
            dynamic_key=self.invocation,
            tags=self.tags,
            task_inputs=inputs,
            state=state,
            state_id=state.id,
            state_type=state.type,
            state_name=state.name,
            run_count=1,
            flow_run_run_count=self.flow_run.run_count,
            expected_start_time=node.started,
            start_time=node.started,
            end_time=end,
            total_run_time=(end - node.started) if end and node.started else timedelta(0),
        )

    def _emit_state(self, node: _Node, state: Any, initial: Any) -> None:
        from prefect.utilities.engine import emit_task_run_state_change_event

        state.state_details.task_run_id = node.task_run_id
        state.state_details.flow_run_id = self.flow_run.id
        task_run = self._task_run(node, state)
        node.last_event = emit_task_run_state_change_event(
            task_run=task_run, initial_state=initial, validated_state=state, follows=node.last_event
        )

    def _started(self, event: Any) -> None:
        info = event.data.node_info
        node = self._node(info.unique_id, info)
        node.started = _timestamp(info.node_started_at)
        node.seen_started = time.monotonic()
        self.running[info.unique_id] = node  # reported Running if still there after running_after

    def _finished(self, event: Any) -> None:
        from prefect.states import Cancelled, Completed, Failed, Running

        info = event.data.node_info
        node = self._node(info.unique_id, info)
        self.running.pop(info.unique_id, None)
        result = event.data.run_result
        status = (result.status or info.node_status or "").lower()
        message = (result.message or status).strip()
        initial = Running(timestamp=node.started) if node.running_reported else None
        if node.started is None:  # skipped nodes never start
            node.started = _timestamp(info.node_finished_at)
        finished = max(_timestamp(info.node_finished_at), node.started)
        if status in FAILED:
            state = Failed(message=f"{node.name} {status}: {message}", timestamp=finished)
        elif status in SKIPPED:
            # Cancelled, named Skipped: it did not run because something upstream failed.
            state = Cancelled(name="Skipped", message=f"{node.name} skipped: {message}", timestamp=finished)
        else:
            state = Completed(message=message, timestamp=finished)
        self._emit_state(node, state, initial)
        node.finished = True
        if status not in SKIPPED and node.resource_type in MATERIALIZED:
            # Sent once dbt is done (stamped with this time): asset events need not be live, and
            # sending them meanwhile would take CPU from dbt's threads.
            self.materialized.append((node, info, status in FAILED, finished))

    def close(self) -> None:
        """Reports what is left, then fails the task runs of nodes that started but never finished
        (dbt stopped mid-run)."""
        from prefect.states import Failed, Running

        self.stopped.set()
        self.thread.join()
        if not self.enabled:
            return
        for node, info, failed, finished in self.materialized:
            self.context.copy().run(self._emit_assets, node, info, failed, finished)
        for node in list(self.nodes.values()):
            if node.started is not None and not node.finished:
                state = Failed(message=f"{node.name}: dbt stopped before the node finished")
                initial = Running(timestamp=node.started) if node.running_reported else None
                self.context.copy().run(self._emit_state, node, state, initial)
                node.finished = True

    # --- assets ----------------------------------------------------------------------------------

    def _asset(self, unique_id: str) -> Any:
        """The asset of a model, seed, snapshot or source (None for others), keyed as prefect-dbt does."""
        if unique_id in self.assets:
            return self.assets[unique_id]
        from prefect.assets import Asset, AssetProperties
        from prefect.assets.core import MAX_ASSET_DESCRIPTION_LENGTH

        node = self.manifest.nodes.get(unique_id) or self.manifest.sources.get(unique_id)
        asset = None
        relation = getattr(node, "relation_name", None)
        kind = str(getattr(node, "resource_type", ""))
        if relation and (kind in MATERIALIZED or kind == "source"):
            meta = (getattr(node, "meta", None) if kind == "source" else node.config.meta) or {}
            if meta.get("prefect", {}).get("enable_assets", True):
                properties: dict[str, Any] = {"name": asset_name(relation)}
                if node.description:
                    properties["description"] = node.description[:MAX_ASSET_DESCRIPTION_LENGTH]
                if isinstance(meta.get("owner"), str):
                    properties["owners"] = [meta["owner"]]
                asset = Asset(
                    key=asset_key(self.adapter_type, relation), properties=AssetProperties(**properties)
                )
        self.assets[unique_id] = asset
        return asset

    def _upstream_assets(self, manifest_node: Any) -> list[Any]:
        """Assets a node reads: its parents, through ephemeral models (which are not relations)."""
        found: list[Any] = []
        seen: set[str] = set()
        stack = list(getattr(getattr(manifest_node, "depends_on", None), "nodes", None) or [])
        while stack:
            unique_id = stack.pop()
            if unique_id in seen:
                continue
            seen.add(unique_id)
            parent = self.manifest.nodes.get(unique_id)
            if parent is not None and getattr(parent.config, "materialized", None) == "ephemeral":
                stack += list(parent.depends_on.nodes)
            elif (asset := self._asset(unique_id)) is not None:
                found.append(asset)
        return found

    def _emit_assets(self, node: _Node, info: Any, failed: bool, occurred: datetime) -> None:
        from google.protobuf.json_format import MessageToDict
        from prefect.context import AssetContext
        from prefect.events import emit_event

        if node.resource_type not in MATERIALIZED or node.manifest_node is None:
            return
        asset = self._asset(node.unique_id)
        if asset is None:
            return
        upstream = self._upstream_assets(node.manifest_node)
        for parent in upstream:
            emit_event(
                event="prefect.asset.referenced",
                resource=AssetContext.asset_as_resource(parent),
                related=[],
                occurred=occurred,
            )
        related = [AssetContext.asset_as_related(parent) for parent in upstream]
        related += [
            AssetContext.related_materialized_by("dbt"),
            {
                "prefect.resource.id": f"prefect.task-run.{node.task_run_id}",
                "prefect.resource.role": "task-run",
                "prefect.resource.name": node.name,
            },
        ]
        emit_event(
            event=f"prefect.asset.materialization.{'failed' if failed else 'succeeded'}",
            resource=AssetContext.asset_as_resource(asset),
            related=related,
            payload=MessageToDict(info, preserving_proto_field_name=True),
            occurred=occurred,
        )
