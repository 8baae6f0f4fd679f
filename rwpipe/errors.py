"""Known errors: the CLI prints their message on one line and exits 1, without a traceback."""


class RwpipeError(Exception):
    """Base class for errors a user can fix (bad input, bad params, missing files)."""


class ConfigError(RwpipeError):
    """A params.yaml section is missing, has an unknown key, a wrong type or a bad value."""


class ArtifactError(RwpipeError):
    """An artifact file is missing, truncated, foreign, of the wrong kind or violates its schema."""


class InputError(RwpipeError):
    """An input that is not an rwpipe artifact (a dataset file, a model path) cannot be used."""
