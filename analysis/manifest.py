"""What `grporm report` wrote, so that a later report deletes only its own stale files.

The manifest, ``RESULTS/.report_files.json``, lists every file a report wrote (its path relative to
the results folder and the SHA-256 of its content). A later report deletes a file only when the
manifest lists it, this report did not write it again (e.g. a section whose runs were deleted), and
its content is still what the report wrote: a user's own file under ``tables/`` or ``figures/``, or
a report file the user has since edited, is never deleted. Without a manifest (a results folder from
before it, or one whose manifest was deleted) a report deletes nothing.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from grporm.errors import GrpormError
from grporm.records.inputs import read_json
from grporm.records.storage import write_json

MANIFEST_NAME = ".report_files.json"


def _digest(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes; None for a symlink, a folder or a missing file."""
    if path.is_symlink() or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(root: Path, name: str) -> bool:
    """A manifest entry is a plain relative path inside the results folder (a planted manifest must
    not make a report delete anything outside it)."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
        return False
    return (root / name).resolve().is_relative_to(root.resolve())


def check_inside(root: Path, folders: Iterable[str]) -> None:
    """The report's own folders (tables/, figures/) lead nowhere outside the results folder: a
    planted link there would make the report write, and replace files, elsewhere."""
    for name in folders:
        folder = root / name
        if folder.is_symlink() and not folder.resolve().is_relative_to(root.resolve()):
            raise GrpormError(f"{folder} is a link to {folder.resolve()}, outside {root}; the report writes only inside "
                              f"the results folder: remove the link (the report recreates {name}/)")


def read_manifest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of the files the last report wrote; {} without a usable manifest
    (one warning line when it is damaged: then no stale file is deleted)."""
    path = root / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = read_json(path, "report manifest", "no stale report file is deleted this time (the manifest is rewritten)",
                         {"files": dict})
    except GrpormError as err:
        print(f"warning: {err}", file=sys.stderr)
        return {}
    return {k: v for k, v in data["files"].items() if isinstance(k, str) and isinstance(v, str) and _inside(root, k)}


def prune_and_record(root: Path, written: Iterable[Path], owns: Callable[[str], bool]) -> None:
    """Delete the files of an earlier report in this report's part (`owns(relative path)`) that this
    one did not write and nobody changed since, then record `written` as this part's files."""
    now = {path.relative_to(root).as_posix(): _digest(path) for path in written}
    old = read_manifest(root)
    for name, digest in sorted(old.items()):
        if owns(name) and name not in now and _digest(root / name) == digest:
            (root / name).unlink()
    kept = {name: digest for name, digest in old.items() if not owns(name)}
    files = {name: digest for name, digest in (kept | now).items() if digest is not None}
    write_json(root / MANIFEST_NAME, {"about": "files written by grporm report (a later report deletes only these)",
                                      "files": dict(sorted(files.items()))})
