"""Which failures are worth retrying: transient ones (network, timeouts, 5xx, locks), never bad data.

Used as ``retry_condition_fn`` of the ELT tasks. A retry of a malformed record, a failing dbt test
or a misconfiguration would fail the same way again and only delay the alert, so those fail at once.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from flows.errors import PermanentError

# Third-party errors are matched by class name anywhere in the exception chain, so the optional
# drivers (requests, psycopg2, snowflake, duckdb) need not be imported to classify an error.
TRANSIENT_TYPES = {
    "ConnectionError",  # requests and builtin
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "TimeoutError",
    "ChunkedEncodingError",
    "RemoteDisconnected",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "BrokenPipeError",
    "OperationalError",  # psycopg2/sqlalchemy: server gone, connection refused
    "InterfaceError",
}
# dbt reports adapter errors as text only (prefect-dbt re-raises them as ValueError).
TRANSIENT_MESSAGES = re.compile(
    r"could not set lock on file|connection (reset|refused|closed|timed out)|timed out|"
    r"temporarily unavailable|too many requests|503 Service Unavailable|502 Bad Gateway|504 Gateway",
    re.IGNORECASE,
)
# The project's own permanent errors and pydantic's are matched by class; dlt's by name.
NEVER_RETRY_CLASSES = (PermanentError, ValidationError)
NEVER_RETRY_TYPES = {"DataValidationError"}


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, dlt's ``.exception``)."""
    out: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or any(current is seen for seen in out):
            continue
        out.append(current)
        inner = getattr(current, "exception", None)
        stack += [current.__cause__, current.__context__, inner if isinstance(inner, BaseException) else None]
    return out


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    chain = exception_chain(exc)
    names = {type(e).__name__ for e in chain}
    if names & NEVER_RETRY_TYPES or any(isinstance(e, NEVER_RETRY_CLASSES) for e in chain):
        return False
    if names & TRANSIENT_TYPES:
        return True
    for e in chain:
        status = _http_status(e)
        if status is not None:
            return status == 429 or status >= 500
    return any(TRANSIENT_MESSAGES.search(str(e)) for e in chain)


def retry_on_transient_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry only when the task failed with a transient error."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False
