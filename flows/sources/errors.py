"""Errors that mean "the source's data is wrong", as opposed to "the source is unreachable"."""


class MalformedSourceDataError(ValueError):
    """A source returned records that cannot be loaded as they are (missing keys, bad types).

    Never retried: retrying returns the same records. The message names the resource and field.
    """
