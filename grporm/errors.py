"""User-facing errors: the CLI prints them as one line and exits with code 2."""
import errno


def first_error(err) -> tuple[str, dict]:
    """The first problem of a pydantic ValidationError: its dotted location and the error itself."""
    first = err.errors()[0]
    return ".".join(str(part) for part in first["loc"]), first


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


class FileSystemError(GrpormError):
    """An operating-system error on a file or folder (a name too long, a full disk, a read-only or
    immutable folder...): one line naming the path and the fix, never a traceback."""


# errno -> (the problem, the fix); anything else: the system's own words and a generic fix.
_NAME_FIX = "shorten the experiment name, the arm names or matrix values that make up run ids (see --dry-run), or the path"
_SPACE_FIX = "free space, or give --results / --checkpoints a folder on another disk"
_WRITE_FIX = "make it writable (chmod, or chattr -i if it is immutable), or give --results / --checkpoints another folder"
OS_PROBLEMS = {
    errno.ENAMETOOLONG: ("a name in the path is too long (a file system allows 255 bytes per name)", _NAME_FIX),
    errno.ENOSPC: ("no space left on the device", _SPACE_FIX),
    errno.EDQUOT: ("disk quota exceeded", _SPACE_FIX),
    errno.EROFS: ("read-only file system", "give --results / --checkpoints a folder on a writable disk"),
    errno.EACCES: ("permission denied", _WRITE_FIX),
    errno.EPERM: ("operation not permitted (an immutable or append-only file or folder?)", _WRITE_FIX),
    errno.ENOENT: ("does not exist", "check the path (was a folder removed while the command ran?)"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "move the file away or give another folder"),
    errno.EISDIR: ("is a folder, not a file", "move the folder away or give another path"),
    errno.EEXIST: ("a file is in the way of a folder", "move it away or give another folder"),
    errno.ELOOP: ("is a symlink loop", "fix the symlink"),
    errno.EIO: ("input/output error (a failing disk or network file system)", "check the disk, then rerun the same command"),
}


def os_error(err: OSError) -> FileSystemError:
    """`err` as one line: '<path>: <problem>; <fix>', the path being the file the system named."""
    problem, fix = OS_PROBLEMS.get(err.errno, (err.strerror or first_line(err, with_type=True),
                                               "check the path and the disk, then rerun the same command"))
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "a file or folder"
    return FileSystemError(f"{where}: {problem} ({type(err).__name__}); {fix}")
