"""The flows' own errors. Each ``PermanentError`` means "retrying gives the same result": bad data,
missing settings, a misconfiguration. flows/retry.py never retries them and fails the run at once."""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that a retry would repeat; the message says what is wrong and how to fix it."""


class MalformedSourceDataError(PermanentError, ValueError):
    """A source returned records that cannot be loaded as they are (missing keys, bad types).

    The message names the resource and field.
    """


class MissingCredentialsError(PermanentError, RuntimeError):
    """Required credentials are not configured; names them, never their values."""


class WarehouseConfigError(PermanentError, ValueError):
    """The warehouse settings are invalid; the message says which setting and how to fix it."""
