"""The project's own error type for problems a user fixes in their data or configuration."""


class DataError(ValueError):
    """Bad input data or configuration: a missing folder, an annotation file of the wrong layout, classes
    that do not match the model, a checkpoint that does not fit.

    Recipes end such a run with a one-line message naming the problem. Every other
    exception (a bug, CUDA running out of memory, ...) propagates with its traceback.
    """


class MissingDataError(DataError, FileNotFoundError):
    """A folder or file the recipe needs does not exist."""
