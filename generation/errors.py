"""The one exception family for bad user input: config, data, model location, backend choice.

The runner prints these without a traceback and exits with status 2; anything else is a bug or a failed
run (status 1, with a traceback).
"""


class UserInputError(Exception):
    """Something the user can fix in their config, files or environment; the message says what."""
