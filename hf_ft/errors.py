"""The one exception type for bad user input, so a recipe can print it as one line instead of a traceback."""


class InputError(ValueError):
    """A config, data set, checkpoint or output dir that cannot be used; the message names it and the fix."""
