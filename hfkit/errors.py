"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class HfkitError(Exception):
    """Bad input from the user (recipe, data, model folder). Message names the key/file and what was expected."""
