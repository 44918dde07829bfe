"""The one base class of the errors a user can fix: bad input, data, settings or files.

`prunekd` prints such an error as one line naming the command and what to fix (cli.main), never as a
traceback. Standard library only: the workflow's own checks raise it too.
"""


class PrunekdError(Exception):
    """A problem with what the user gave (a file, a line, a config key); its message says which."""
