"""The one error type for user mistakes: command-line entry points turn it into one line and exit 2."""


class UserError(ValueError):
    """A mistake the user can fix (a bad path, name, value or file), with a message saying how."""
