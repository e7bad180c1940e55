"""The project's own error types for problems a user fixes in their data, configuration or machine."""

import errno
import shutil


class DataError(ValueError):
    """Bad input data or configuration: a missing folder, an annotation file of the wrong layout, classes
    that do not match the model, a checkpoint that does not fit.

    Recipes end such a run with a one-line message naming the problem. Every other
    exception (a bug, CUDA running out of memory, ...) propagates with its traceback.
    """


class MissingDataError(DataError, FileNotFoundError):
    """A folder or file the recipe needs does not exist."""


class DiskFullError(DataError, OSError):
    """Writing failed because the device is full."""


def is_disk_full(error):
    """Whether ``error`` says the device is full (``OSError`` ENOSPC, or torch's serialiser giving up mid-file).

    Example
    -------
    >>> import errno
    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 640 vs 512"))
    True
    >>> is_disk_full(RuntimeError("CUDA out of memory"))
    False
    """
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and ("unexpected pos" in message or "No space left" in message)


def disk_full_error(folder, doing):
    """A ``DiskFullError`` naming ``folder`` and its free space."""
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"no space left on {folder} ({free}) while {doing}")
