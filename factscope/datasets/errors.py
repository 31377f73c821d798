"""Errors raised by dataset loaders."""


class DatasetFormatError(ValueError):
    """A malformed dataset record; the message names the file, record and field."""
