"""Everything a user hands in is read here: files, folders, JSON records, environment variables.

Each reader raises one `ConfigError` line naming the input, the problem and the fix, so a bad
input can never surface as a traceback (a `UnicodeDecodeError` from a binary file given by
mistake, an `IsADirectoryError`, a symlink loop...). The checks are by kind of input, not by
case: a new caller gets all of them by calling the reader.

Override parsing (`-o KEY=VALUE`) lives with the rest of experiment loading:
`grporm.plan.experiment.parse_override`.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from grporm.errors import ConfigError

# An experiment file or a record is a few KiB; anything this large was handed in by mistake
# (a data set, a checkpoint) and reading it whole would only waste memory before failing.
MAX_TEXT_BYTES = 16 * 2**20

_OS_PROBLEMS = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "is a symlink loop",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EISDIR: "is a folder, not a file",
}


def _os_problem(err: OSError) -> str:
    return _OS_PROBLEMS.get(err.errno, err.strerror or type(err).__name__)


class InputError(ConfigError):
    """A file or folder handed in that cannot be used; `.path` and `.problem` for callers that
    word the message their own way (e.g. a damaged run record that is redone)."""

    def __init__(self, what: str, path: Path | str, problem: str, fix: str):
        super().__init__(f"{what} {path}: {problem}; {fix}")
        self.path, self.problem = path, problem


def _fail(what: str, path: Path | str, problem: str, fix: str) -> InputError:
    return InputError(what, path, problem, fix)


def regular_file(path: Path | str, what: str, fix: str) -> Path:
    """`path` if it is an existing regular file (symlinks followed); else ConfigError.

    Checked with one stat: a folder, a FIFO or a device (which would block or never end) and a
    dangling or looping symlink are refused before anything opens them."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as err:
        raise _fail(what, path, _os_problem(err), fix) from None
    except ValueError as err:  # an embedded NUL byte in the name
        raise _fail(what, repr(str(path)), f"not a valid path ({err})", fix) from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(what, path, "is a folder, not a file", fix)
    if not stat.S_ISREG(info.st_mode):
        raise _fail(what, path, "is not a regular file (a device, FIFO or socket)", fix)
    return path


def read_bytes(path: Path | str, what: str, fix: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    path = regular_file(path, what, fix)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise _fail(what, path, _os_problem(err), fix) from None
    if len(data) > max_bytes:
        raise _fail(what, path, f"larger than {max_bytes // 2**20} MiB, not a file of this kind", fix)
    return data


def read_text(path: Path | str, what: str, fix: str, *, allow_empty: bool = False,
              max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file's text (UTF-8); a missing, unreadable, binary, huge or (unless allowed) empty file
    is one ConfigError: '<what> <path>: <problem>; <fix>'."""
    data = read_bytes(path, what, fix, max_bytes)
    # NUL is valid UTF-8 but never in a text file: it marks a binary file (zeros, a checkpoint...).
    if b"\0" in data:
        raise _fail(what, path, "is a binary file, not text", fix)
    try:
        text = data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as err:
        raise _fail(what, path, f"is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}; "
                                "a binary file?)", fix) from None
    if not allow_empty and not text.strip():
        raise _fail(what, path, "is empty", fix)
    return text


Fields = Mapping[str, type | tuple[type, ...]]


def check_fields(data: Any, fields: Fields) -> str | None:
    """Why `data` is not a JSON object with these keys of these types, or None if it is."""
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__}, not an object"
    for key, kind in fields.items():
        if key not in data:
            return f"lacks the key {key!r}"
        if not isinstance(data[key], kind) or (isinstance(data[key], bool) and bool not in _types(kind)):
            names = "/".join(t.__name__ for t in _types(kind))
            return f"{key!r} is a {type(data[key]).__name__}, not {names}"
    return None


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def read_json(path: Path | str, what: str, fix: str, fields: Fields | None = None,
              check: Callable[[dict], str | None] | None = None) -> dict:
    """A JSON object read back from disk (run record, tuning record, lr-search state...).

    `fields` maps required keys to their type(s); `check` returns why the object is invalid
    beyond that (or None). Any problem -- unreadable, not UTF-8, not JSON, not an object, a
    missing or mistyped field -- is one ConfigError naming the file and the fix. Callers that
    redo the work instead of stopping (a corrupted run record: see
    `grporm.records.storage.read_record_or_rerun`) catch it."""
    text = read_text(path, what, fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(what, path, f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})", fix) from None
    except RecursionError:
        raise _fail(what, path, "is not valid JSON (nested too deeply)", fix) from None
    problem = check_fields(data, fields or {})
    if problem is None and check is not None:
        problem = check(data)
    if problem is not None:
        raise _fail(what, path, problem, fix)
    return data


def output_folder(path: Path | str, option: str) -> Path:
    """A folder the command will write into: it, or its nearest existing parent, must be a
    writable folder. Checked before anything is written, so a file given where a folder is
    expected (or a read-only place) fails at once instead of after the first run."""
    path = Path(path)
    fix = f"give {option} a folder you can write to"
    probe = path
    while True:
        try:
            info = probe.stat()
        except FileNotFoundError:
            if probe.parent == probe:
                raise _fail(option, path, "no part of the path exists", fix) from None
            probe = probe.parent
            continue
        except OSError as err:
            raise _fail(option, path, _os_problem(err), fix) from None
        except ValueError as err:
            raise _fail(option, repr(str(path)), f"not a valid path ({err})", fix) from None
        break
    if not stat.S_ISDIR(info.st_mode):
        where = "is a file" if probe == path else f"{probe} is a file"
        raise _fail(option, path, f"{where}, not a folder", fix)
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f" ({probe})"
        raise _fail(option, path, f"is not writable{where}", fix)
    return path


def expand_home(path: Path | str) -> Path:
    """`path` with a leading `~` expanded. With HOME unset and no home in the password database (a
    container's arbitrary uid) Python cannot tell it: one ConfigError line, not a RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ConfigError(f"{path}: cannot tell the home folder '~' stands for (HOME is unset and this user has none "
                          "in the password database); set HOME, or give the folder without ~ (data.root, "
                          "GRPORM_DATA, model.weights)") from None


def input_folder(path: Path | str, what: str, fix: str) -> Path:
    """An existing folder the command reads from."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as err:
        raise _fail(what, path, _os_problem(err), fix) from None
    except ValueError as err:
        raise _fail(what, repr(str(path)), f"not a valid path ({err})", fix) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _fail(what, path, "is a file, not a folder", fix)
    if not os.access(path, os.R_OK | os.X_OK):
        raise _fail(what, path, "permission denied", fix)
    return path


# -- environment variables ----------------------------------------------------------------------
# Every variable the suite itself reads, with what a valid value is. Variables only the libraries
# read are theirs to check, except where a bad value would start a run that then misbehaves.
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")
BOOLEAN_WORDS = ("", "0", "1", "false", "true", "no", "yes", "off", "on")


def _env_choice(name: str, choices: Iterable[str], fix: str) -> str | None:
    value = os.environ.get(name, "").strip().lower()
    choices = tuple(choices)
    if value and value not in choices:
        return f"environment variable {name}={os.environ[name]!r}: not one of {', '.join(c for c in choices if c)}; {fix}"
    return None


def _env_int(name: str, minimum: int, empty_is_unset: bool = False) -> str | None:
    raw = os.environ.get(name)
    if raw is None or (empty_is_unset and not raw.strip()):
        return None
    try:
        if int(raw) >= minimum:
            return None
    except ValueError:
        pass
    return f"environment variable {name}={raw!r}: must be an integer >= {minimum}; unset it or fix it"


def _env_folder(name: str, must_exist: bool) -> str | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    path = expand_home(raw)
    if path.exists() and not path.is_dir():
        return f"environment variable {name}={raw!r}: is a file, not a folder; point it to a folder or unset it"
    if must_exist and not path.exists():
        return f"environment variable {name}={raw!r}: no such folder; create it or unset {name}"
    return None


def check_environment() -> None:
    """Raise one ConfigError for the first environment variable the suite reads with a value it
    cannot use (before anything is loaded or written)."""
    problems = [
        _env_choice("WANDB_MODE", WANDB_MODES, "unset it, or use offline / online / disabled"),
        _env_choice("HF_HUB_OFFLINE", BOOLEAN_WORDS, "use 1 or 0"),
        _env_folder("GRPORM_DATA", must_exist=False),
        _env_folder("WANDB_DIR", must_exist=False),
        _env_int("WORLD_SIZE", 1),
        _env_int("LOCAL_WORLD_SIZE", 1),
        _env_int("LOCAL_RANK", 0),
        _env_int("RANK", 0),
        _env_int("OMP_NUM_THREADS", 1, empty_is_unset=True),
    ]
    for problem in problems:
        if problem is not None:
            raise ConfigError(problem)
