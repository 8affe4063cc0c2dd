"""Warnings as one line each, naming the file they are about: `warning: <file>: <message>`.

Python prints a warning as two lines (the message, then the source line that warned), and a library's
warning (PIL decoding an image, torch or timm reading a weights file) names neither the input it is
about nor what to do. `install()`, called once at the CLI root (grporm.cli), makes every warning one
`warning:` line; code reading a user's file wraps the read in `reading(path)` so the line names that
file. The context is per thread (the image decoder reads in threads). A warning raised outside any
read names the library module that warned.
"""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

_STATE = threading.local()
_PACKAGE = Path(__file__).resolve().parents[2]  # grporm/ and analysis/: the suite's own warnings


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Within: a warning raised in this thread is about `path`."""
    stack = getattr(_STATE, "paths", None)
    if stack is None:
        stack = _STATE.paths = []
    stack.append(str(path))
    try:
        yield
    finally:
        stack.pop()


def current() -> str | None:
    stack = getattr(_STATE, "paths", None)
    return stack[-1] if stack else None


def _origin(filename: str) -> str | None:
    """'PIL/Image.py' for a library's warning; None for the suite's own (it words them itself)."""
    path = Path(filename)
    try:
        if path.resolve().is_relative_to(_PACKAGE) and "site-packages" not in path.parts:
            return None
    except (OSError, ValueError):
        pass
    parts = path.parts
    for marker in ("site-packages", "dist-packages", "lib"):
        if marker in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(marker):])
    return path.name


def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int) -> str:
    """The warning as one `warning:` line naming the file being read, or else the module that warned."""
    text = " ".join(str(message).split()) or category.__name__
    where = current()
    if where is not None and where not in text:
        text = f"{where}: {text}"
    elif where is None and (origin := _origin(filename)) is not None:
        text = f"{text} ({category.__name__} from {origin}:{lineno})"
    return f"warning: {text}"


def install() -> Callable[[], None]:
    """Format every warning as one line from now on; returns the function that undoes it.

    The formatter is replaced, not `showwarning`: a recorder (pytest.warns, catch_warnings(record=True))
    still receives the warnings themselves."""
    previous = warnings.formatwarning

    def format_one_line(message, category, filename, lineno, line=None) -> str:
        return one_line(message, category, filename, lineno) + "\n"

    warnings.formatwarning = format_one_line

    def undo() -> None:
        warnings.formatwarning = previous

    return undo
