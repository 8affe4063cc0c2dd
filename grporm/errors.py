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


def first_line(err: BaseException, *, with_type: bool = False) -> str:
    """An exception's message cut to its first line, for one-line error messages.

    Messages of library errors (network, decoders, torch.load) often span many lines; an empty
    message gives the exception's type name. `with_type` prefixes the type (`OSError: ...`).
    """
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    return f"{type(err).__name__}: {lines[0]}" if with_type else lines[0]
