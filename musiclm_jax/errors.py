"""The one exception type for mistakes a user can fix.

Binaries print a `UserError` as a single line (no traceback) and exit with
status 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A problem with the user's config, data or files; the message says what to do."""
