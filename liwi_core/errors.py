"""Errors with one-line messages that tell the user what to fix."""


class LiWiError(ValueError):
    """Bad input or settings; the message is one line and says what to do."""
