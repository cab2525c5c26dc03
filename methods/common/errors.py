"""The one error type for user mistakes: command-line entry points turn it into one line and exit 2."""


class UserError(ValueError):
    """A mistake the user can fix (a bad path, name, value or file), with a message saying how."""


def did_you_mean(name: str, known) -> str:
    """'; did you mean 'x' or 'y'?' for the known names closest to a mistyped one, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=2)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
