"""The one exception type the CLI turns into a one-line message and exit status 2.

Anything a user can get wrong (a name, a number, a file) raises ``HarnessError``
with a sentence that names the problem. Everything else is a bug and keeps its
traceback.
"""


class HarnessError(Exception):
    """A problem with the user's input: shown as one line, exit status 2."""


class UnknownNameError(HarnessError, KeyError):
    """A plugin name that is not registered; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
