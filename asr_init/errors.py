"""The one exception type for user errors.

A `UserError` is something the user can fix (a missing file, a bad value, a corrupt
input). The CLI catches it at the edge and prints its message in one sentence, with a
non-zero exit; any other exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """An error in the user's input: the message names the file or value and the fix."""
