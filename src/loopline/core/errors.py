"""The one error type users see.

Every failure a user can cause (a bad config value, a malformed data file, a schema
violation, a directory that is not a loopline repo) raises :class:`LooplineError`. The CLI
prints it as one line and exits non-zero; tracebacks are for bugs, or for ``--verbose``.
"""

from __future__ import annotations


class LooplineError(Exception):
    """A user-facing failure, printed as one clear line.

    Args:
        message: What is wrong, naming the file, column, key or rule at fault.
        details: Optional extra lines (offending rows, a table) printed below it.
        exit_code: Process exit status for the CLI.
    """

    def __init__(self, message: str, *, details: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
