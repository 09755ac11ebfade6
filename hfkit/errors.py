"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class HfkitError(Exception):
    """Bad input from the user (recipe, data, model folder). Message names the key/file and what was expected."""


class Interrupted(Exception):
    """A command stopped on a signal (SIGTERM, SIGINT) with what was kept said in the message; the CLI
    prints it as one line and exits with `code` (128 + the signal's number)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code
