"""The root of meleewm's own exceptions.

Every error meleewm raises on purpose (a bad file, setting, dataset, checkpoint or request) derives from
:class:`MeleewmError`, with a message that says what is wrong, so the command line catches this one class and
prints the message; anything else is a bug and keeps its traceback. Classes that were ``ValueError`` stay
``ValueError`` too, so code that validates input by catching ``ValueError`` still works.
"""


class MeleewmError(Exception):
    """A failure meleewm explains in its message."""
