"""Where an error in the team's code comes from, for messages that name a file and a line.

Used where the platform imports flows/: the deploy step (before registering anything) and the
flow-run command (a run whose flow cannot be imported ends Failed with this in its message).
"""

from __future__ import annotations

import traceback
from pathlib import Path


def user_exception(exc: BaseException) -> BaseException:
    """The team's own exception inside Prefect's wrappers (ScriptError.user_exc, then causes)."""
    seen = {id(exc)}
    while (inner := getattr(exc, "user_exc", None) or exc.__cause__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def code_location(exc: BaseException, code_dir: Path, source: Path | None = None) -> str:
    """Where in the team's code ``exc`` comes from, e.g. 'flows/x.py, line 3': the innermost
    frame under ``code_dir`` (the deployments' working directory, FLOWS_DIR in the stack).
    ``source`` is the file being loaded, for syntax errors reported without a file name."""
    frames = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError):
        named = exc.filename and not exc.filename.startswith("<")
        frames.append((exc.filename if named else str(source or ""), exc.lineno))
    for name, line in reversed(frames):
        path = Path(name)
        if path.is_relative_to(code_dir):
            return f"{code_dir.name}/{path.relative_to(code_dir)}, line {line}"
    return f"no frame in {code_dir.name}/"


def describe(exc: BaseException, code_dir: Path, source: Path | None = None) -> str:
    """'flows/x.py, line 3: ModuleNotFoundError: No module named 'y''."""
    inner = user_exception(exc)
    message = inner.msg if isinstance(inner, SyntaxError) else str(inner)
    return f"{code_location(inner, code_dir, source)}: {type(inner).__name__}: {message}"
