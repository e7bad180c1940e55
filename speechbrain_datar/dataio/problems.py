"""Why a clip cannot be used: the reasons that preparation's skip report counts."""


class ClipProblem(Exception):
    """Raised when a clip cannot be used; ``reason`` is a short key for the skip report.

    Example
    -------
    >>> ClipProblem("missing", "a.wav").reason
    'missing'
    """

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
