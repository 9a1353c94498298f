"""Resolves credentials (Snowflake, source secrets) by name, at run time.

Two places, looked up in this order:

1. A prefect-aws ``AwsSecret`` block, when ``CREDENTIALS_AWS_SECRET_BLOCK`` names one. The block
   points at one Secrets Manager secret holding a JSON object of ``{"NAME": "value"}``; it is read
   fresh at every flow run, so a rotated secret is picked up without restarting anything.
2. The process environment (``NAME=value``), filled from ``.env`` by the stack (which
   ``scripts/secrets-to-env`` can fill from Secrets Manager at bootstrap). Changing it needs the
   containers to be recreated.

A name absent from the block's JSON falls back to the environment, so the block may hold only the
secrets that rotate. Values are never logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from flows.errors import MissingCredentialsError

BLOCK_ENV = "CREDENTIALS_AWS_SECRET_BLOCK"


def _load_block_values(block_name: str) -> dict[str, str]:
    # Imported here: prefect-aws pulls in boto3, which runs without the block path don't need.
    from prefect_aws.secrets_manager import AwsSecret

    try:
        raw = AwsSecret.load(block_name, _sync=True).read_secret(_sync=True)
    except ValueError as exc:
        raise MissingCredentialsError(
            f"{BLOCK_ENV}={block_name!r} but no AwsSecret block of that name exists on the Prefect "
            "server: create it (see README, Flows > Credentials) or unset the variable."
        ) from exc
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        raise MissingCredentialsError(
            f"The secret behind AwsSecret block {block_name!r} must be a JSON object of "
            '{"NAME": "value"} pairs (e.g. {"SNOWFLAKE_PASSWORD": "..."}); it is not.'
        )
    return {str(k): str(v) for k, v in values.items() if v is not None}


class CredentialResolver:
    """Looks names up in the AwsSecret block (if configured) and then the environment.

    One resolver reads the block once, so make one per flow run (``CredentialResolver()``) and
    not one per process: that is what makes rotation take effect on the next run.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        block_name = self._environ.get(BLOCK_ENV, "").strip()
        self.block_name = block_name or None
        self._block_values = _load_block_values(block_name) if block_name else {}

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None when it is unset or empty in both places."""
        value = self._block_values.get(name) or self._environ.get(name)
        return value or None

    def source_of(self, name: str) -> str:
        """Where ``name`` comes from ("aws-secret-block", "environment" or "unset"), for logs."""
        if self._block_values.get(name):
            return "aws-secret-block"
        return "environment" if self._environ.get(name) else "unset"

    def require(self, names: Iterable[str], purpose: str) -> dict[str, str]:
        """Values of all ``names``; raises naming every missing one if any is missing."""
        values = {name: self.get(name) for name in names}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            where = (
                f"the AwsSecret block {self.block_name!r} or the environment"
                if self.block_name
                else ("the environment (.env)")
            )
            raise MissingCredentialsError(
                f"{purpose} needs {', '.join(missing)}: set {'it' if len(missing) == 1 else 'them'} "
                f"in {where}."
            )
        return {name: value for name, value in values.items() if value is not None}
