"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class GrpormError(Exception):
    """A problem the user can fix (bad config, missing data or weights); never a bug."""

    exit_code = 2


class ConfigError(GrpormError, ValueError):
    """A ValueError too, so pydantic validators that raise it report the key they were checking."""


class DataMissingError(GrpormError):
    pass


class WeightsError(GrpormError):
    pass


class TrainingDiverged(GrpormError):
    """The loss became NaN or inf; the run is recorded as failed."""

    exit_code = 1
