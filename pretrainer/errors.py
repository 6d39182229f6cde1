"""The errors a user can act on, and the exit code each one ends a command with.

The CLI prints a `UserError` as one line (no traceback) and exits with its `exit_code`:

    0    success
    1    an unexpected error (a bug: printed with its traceback), or failed jobs of a sweep
    2    bad input: a config value, a data or task file (named with its line), a checkpoint
         or run dir that cannot be used; raised before expensive work wherever it can be
    3    pretraining diverged (non-finite loss or gradient norm); the last good state is saved
    130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the current step finished and was
         saved, `resume=true` continues the run (128 + the signal's number, as a shell reports it)

This module imports nothing heavy: the config and the CLI load it before torch.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


class UserError(Exception):
    """A problem the user can fix; the message is one line that says what and where."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field and the valid choices."""


class CheckpointError(UserError):
    """A checkpoint cannot be used (missing, corrupt, unsafe or not ours); the message names the file."""


class RunDirError(UserError):
    """A run dir cannot be used as asked: in use by another process, or holding a run that
    `resume=true` would continue."""


class DivergenceError(UserError):
    """The loss or gradient norm became non-finite; the last good state was saved."""

    exit_code = EXIT_DIVERGED


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the run. A BaseException (like KeyboardInterrupt), so that no
    `except Exception` in a sweep or a library swallows it."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
