"""Read the release's files out of nested zips and folders, refusing what could escape or deceive.

The downloaded `PartImageNet_OOD.zip` holds `<split>.json` beside inner `<split>.zip` files of
images; people also keep the inner zips in a folder, or an unpacked copy in any layout.
`collect(source, staging)` walks any of these and returns every regular file by its base name:
annotation files, and image candidates (placed later by the name the json lists). Zip members with
an absolute path, a `..` component or a symlink type are refused and never written; `__MACOSX/`,
`._*` and other hidden entries are skipped. Inner zips are copied to `staging` to be opened.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from benchmark.data.layout import is_junk
from benchmark.data.release.facts import (MAX_COMPRESSION_RATIO, MAX_INNER_ZIP_BYTES,
                                          MAX_MEMBER_BYTES, MAX_RELEASE_BYTES)
from episodes.storage import check_input_file

# How deep zips may nest (the release: an outer zip of inner zips).
MAX_ZIP_DEPTH = 2


@dataclass(frozen=True)
class FileRef:
    """One regular file in a folder or a zip (opened with `open_file`).

    Attributes:
        name: the file's base name.
        where: a readable location, e.g. "PartImageNet_OOD.zip!train.zip!train/n01/n01_1.JPEG".
        path: the file on disk (folder sources), or None.
        archive: the open zip holding it (zip sources), or None.
        member: its member name in `archive`.
        size: its size in bytes (uncompressed).
    """

    name: str
    where: str
    path: Path | None = None
    archive: zipfile.ZipFile | None = None
    member: str | None = None
    size: int = 0

    def open(self):
        """A binary file object of the file's bytes."""
        if self.archive is not None:
            return self.archive.open(self.member)
        return open(self.path, "rb")


@dataclass
class Collected:
    """What a source holds: every regular file, refused zip members, and open zips to close."""

    files: list[FileRef] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "where (why)"
    inflated: int = 0  # bytes the archives' members declare, so far
    _archives: list[zipfile.ZipFile] = field(default_factory=list)

    def close(self) -> None:
        for archive in self._archives:
            archive.close()


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be written (None if it may be)."""
    name = info.filename
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (
            len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "'..' in its path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def oversized_member(info: zipfile.ZipInfo, out: "Collected") -> str | None:
    """Why a member must not be inflated (a zip bomb), or None; counts it towards the total."""
    inner = info.filename.lower().endswith(".zip")
    bound = MAX_INNER_ZIP_BYTES if inner else MAX_MEMBER_BYTES
    if info.file_size > bound:
        return f"declares {info.file_size:,} bytes, more than the {bound:,} the release could hold"
    if info.file_size > (1 << 20) and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1):
        return (f"compressed {info.file_size / max(info.compress_size, 1):,.0f}:1 (more than "
                f"{MAX_COMPRESSION_RATIO}:1): a zip bomb, not release data")
    out.inflated += info.file_size
    if out.inflated > MAX_RELEASE_BYTES:
        return f"the archives inflate to more than the {MAX_RELEASE_BYTES:,} bytes of the release"
    return None


def _junk_path(parts: tuple[str, ...] | list[str]) -> bool:
    return any(is_junk(p) for p in parts if p)


def _walk_zip(archive: zipfile.ZipFile, where: str, staging: Path, depth: int,
              out: Collected) -> None:
    for info in archive.infolist():
        if info.is_dir():
            continue
        if why := unsafe_member(info):  # before the junk test: '..' would pass for hidden
            out.refused.append(f"{where}!{info.filename} ({why})")
            continue
        parts = info.filename.replace("\\", "/").split("/")
        if _junk_path(parts):
            continue
        if why := oversized_member(info, out):
            out.refused.append(f"{where}!{info.filename} ({why})")
            continue
        name = parts[-1]
        here = f"{where}!{info.filename}"
        if name.lower().endswith(".zip") and depth < MAX_ZIP_DEPTH:
            staging.mkdir(parents=True, exist_ok=True)
            copy = staging / f"{len(out._archives)}-{name}"
            try:
                with archive.open(info) as src, open(copy, "wb") as dst:
                    # zipfile stops at the declared size, which was bounded above
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged download
                out.refused.append(f"{here} (cannot be read from its archive: {exc})")
                continue
            _walk_zip_file(copy, here, staging, depth + 1, out)
            continue
        out.files.append(FileRef(name=name, where=here, archive=archive,
                                 member=info.filename, size=info.file_size))


def _walk_zip_file(path: Path, where: str, staging: Path, depth: int, out: Collected) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a member name not UTF-8, too
        out.refused.append(f"{where} (not a readable zip: {exc})")
        return
    out._archives.append(archive)
    _walk_zip(archive, where, staging, depth, out)


def _walk_folder(folder: Path, staging: Path, skip: tuple[Path, ...], out: Collected) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):  # symlinked folders are not followed
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames
                             if not is_junk(d) and (here / d).resolve() not in skip)
        for name in sorted(filenames):
            if is_junk(name):
                continue
            path = here / name
            if not path.is_file():
                continue
            if name.lower().endswith(".zip"):
                _walk_zip_file(path, str(path), staging, 1, out)
            else:
                out.files.append(FileRef(name=name, where=str(path), path=path,
                                         size=path.stat().st_size))


def collect(source: Path, staging: Path, skip: tuple[Path, ...] = ()) -> Collected:
    """Every regular file of `source` (a zip, or a folder of zips and/or files).

    Args:
        source: the downloaded archive, a folder holding the inner zips, or an unpacked copy.
        staging: a folder for copies of inner zips (the caller removes it).
        skip: folders not to walk (resolved), e.g. the output folder inside the source.
    """
    out = Collected()
    if not source.is_dir():  # a FIFO would block zipfile's open; a device never ends
        check_input_file(source, what="release archive", max_bytes=MAX_RELEASE_BYTES)
    if source.is_dir():
        _walk_folder(source, staging, tuple(p.resolve() for p in skip), out)
    else:
        _walk_zip_file(source, source.name, staging, 1, out)
    return out

