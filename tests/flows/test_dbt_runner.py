"""The node reporter's own rules (flows/dbt_runner.py), on dbt events as dbt's callbacks deliver them:
what is queued from dbt's threads, what state events a batch sends, and that a node dbt never
finished does not stay Running. The end-to-end behaviour (task runs, assets, logs on a real server)
is in test_dbt_build.py."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from prefect import flow

from flows.dbt_runner import NodeTaskReporter


def _event(name: str, unique_id: str = "", level: str = "debug", msg: str = "", status: str = "") -> Any:
    info = SimpleNamespace(
        unique_id=unique_id,
        node_name=unique_id.rsplit(".", 1)[-1],
        resource_type="model",
        node_started_at="2026-01-01T00:00:00.000000Z",
        node_finished_at="2026-01-01T00:00:01.500000Z",
        node_status=status,
    )
    data = SimpleNamespace(node_info=info, run_result=SimpleNamespace(status=status, message=msg))
    ts = SimpleNamespace(seconds=1_767_225_600, nanos=0)
    return SimpleNamespace(info=SimpleNamespace(name=name, level=level, msg=msg, ts=ts), data=data)


MANIFEST = SimpleNamespace(
    metadata=SimpleNamespace(adapter_type="duckdb"), nodes={}, sources={}, unit_tests={}
)


@flow
def _report(
    batches: list[list[Any]], close: bool = True, running_after: float = 0.0, pause: float = 0.0
) -> list[tuple[str, str, bool]]:
    """Feeds ``batches`` of events to a reporter, ``pause`` seconds apart; returns (task run, state,
    had a Running before). running_after 0: a node not finished within its batch shows Running."""
    reporter = NodeTaskReporter(MANIFEST)
    reporter.running_after = running_after
    reporter.stopped.set()
    reporter.thread.join()  # drained by hand below, one batch at a time
    sent: list[tuple[str, str, bool]] = []
    reporter._emit_state = lambda node, state, initial: sent.append(  # type: ignore[method-assign]
        (node.name, state.name, initial is not None)
    )
    reporter._emit_assets = lambda *args, **kwargs: None  # type: ignore[method-assign]
    for i, batch in enumerate(batches):
        if i:
            time.sleep(pause)
        for event in batch:
            reporter.on_event(event)
        reporter._drain()
    if close:
        reporter.close()
    return sent


def test_only_node_events_and_visible_lines_are_queued_from_dbts_threads() -> None:
    @flow
    def queued() -> list[str]:
        reporter = NodeTaskReporter(MANIFEST)
        reporter.stopped.set()
        reporter.thread.join()
        for event in [
            _event("NodeStart", "model.p.a"),
            _event("SQLQuery", "model.p.a", level="debug", msg="select 1"),
            _event("LogStartLine", "model.p.a", level="info", msg="1 of 2 START sql view model a"),
            _event("Note", level="info", msg=""),
            _event("NodeFinished", "model.p.a", status="success"),
        ]:
            reporter.on_event(event)
        return [e.info.name for e in reporter.pending]

    assert queued() == ["NodeStart", "LogStartLine", "NodeFinished"]


def test_a_node_done_within_one_batch_skips_running_and_a_slow_one_shows_it() -> None:
    fast, slow = "model.p.fast", "model.p.slow"
    sent = _report(
        [
            [
                _event("NodeStart", fast),
                _event("NodeStart", slow),
                _event("NodeFinished", fast, status="success"),
            ],
            [_event("NodeFinished", slow, status="error", msg="Catalog Error")],
        ]
    )
    assert sent == [
        ("model fast", "Completed", False),  # straight to its final state, start time kept
        ("model slow", "Running", False),
        ("model slow", "Failed", True),
    ]


def test_running_is_sent_only_for_a_node_still_running_after_running_after_seconds() -> None:
    quick, slow = "model.p.quick", "model.p.slow"
    batches = [
        [_event("NodeStart", quick), _event("NodeStart", slow)],
        [_event("NodeFinished", quick, status="success")],  # 0.1 s later: never shown Running
        [],  # 0.2 s after the start: slow has now run past running_after
        [_event("NodeFinished", slow, status="success")],
    ]
    sent = _report(batches, running_after=0.15, pause=0.1)
    assert sent == [
        ("model quick", "Completed", False),
        ("model slow", "Running", False),
        ("model slow", "Completed", True),
    ]


def test_skipped_nodes_and_nodes_dbt_never_finished() -> None:
    sent = _report(
        [
            [_event("NodeFinished", "model.p.child", status="skipped")],
            [_event("NodeStart", "model.p.hung")],
        ]
    )
    assert sent == [
        ("model child", "Skipped", False),
        ("model hung", "Running", False),
        ("model hung", "Failed", True),  # closed after dbt stopped: never left Running
    ]
