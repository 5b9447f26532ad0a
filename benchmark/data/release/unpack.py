"""Read the release's files out of nested zips and folders, refusing what could escape or deceive.

The downloaded `PartImageNet_OOD.zip` holds `<split>.json` beside inner `<split>.zip` files of
images; people also keep the inner zips in a folder, or an unpacked copy in any layout.
`collect(source, staging)` walks any of these and returns every regular file by its base name:
annotation files, and image candidates (placed later by the name the json lists). Zip members with
an absolute path, a `..` component or a symlink type are refused and never written; `__MACOSX/`,
`._*` and other hidden entries are skipped. An inner zip stored without compression (as the
release-shaped twin stores them) is read in place through a window on the outer file; a
compressed one is first copied to `staging` (zip needs to seek in it), 1 MiB at a time.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from benchmark.data.layout import is_junk
from benchmark.data.release.facts import (
    MAX_COMPRESSION_RATIO,
    MAX_INNER_ZIP_BYTES,
    MAX_MEMBER_BYTES,
    MAX_RELEASE_BYTES,
)
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
    _windows: list[io.BufferedReader] = field(default_factory=list)

    def close(self) -> None:
        for archive in self._archives:
            archive.close()
        for window in self._windows:  # a ZipFile never closes a file object it was given
            window.close()


class _Window(io.RawIOBase):
    """Read-only, seekable view of bytes [start, start + size) of a file."""

    def __init__(self, path: str, start: int, size: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._file.seek(self._start + self._pos)
        got = self._file.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


def _stored_window(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BufferedReader | None:
    """A seekable view of a member stored uncompressed in a zip on disk, or None (compressed,
    encrypted, or the zip is not a plain file): its bytes are read in place, not copied."""
    if (
        info.compress_type != zipfile.ZIP_STORED
        or info.flag_bits & 0x1
        or not isinstance(archive.filename, str)
        or not os.path.isfile(archive.filename)
    ):
        return None
    with open(archive.filename, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return io.BufferedReader(_Window(archive.filename, start, info.file_size), 1 << 20)


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be written (None if it may be)."""
    name = info.filename
    if (
        name.startswith(("/", "\\"))
        or PurePosixPath(name).is_absolute()
        or (len(name) > 1 and name[1] == ":")
    ):
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
        info.compress_size, 1
    ):
        return (
            f"compressed {info.file_size / max(info.compress_size, 1):,.0f}:1 (more than "
            f"{MAX_COMPRESSION_RATIO}:1): a zip bomb, not release data"
        )
    out.inflated += info.file_size
    if out.inflated > MAX_RELEASE_BYTES:
        return f"the archives inflate to more than the {MAX_RELEASE_BYTES:,} bytes of the release"
    return None


def _junk_path(parts: tuple[str, ...] | list[str]) -> bool:
    return any(is_junk(p) for p in parts if p)


def _copy_out(archive: zipfile.ZipFile, info: zipfile.ZipInfo, copy: Path, progress: bool) -> None:
    """Stream a member to `copy` (1 MiB at a time: an inner zip of the release is ~2 GB).
    zipfile stops at the declared size, which `oversized_member` bounded before."""
    with (
        archive.open(info) as src,
        open(copy, "wb") as dst,
        tqdm(
            total=info.file_size,
            desc=f"prepare: unpack {info.filename}",
            unit="B",
            unit_scale=True,
            disable=not progress,
            mininterval=2.0,
        ) as bar,
    ):
        while block := src.read(1 << 20):
            dst.write(block)
            bar.update(len(block))


def _walk_zip(
    archive: zipfile.ZipFile,
    where: str,
    staging: Path,
    depth: int,
    out: Collected,
    progress: bool = False,
) -> None:
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
            window = _stored_window(archive, info)
            if window is not None:
                out._windows.append(window)
                try:
                    inner = zipfile.ZipFile(window)
                except (zipfile.BadZipFile, OSError) as exc:
                    out.refused.append(f"{here} (not a readable zip: {exc})")
                    continue
                out._archives.append(inner)
                _walk_zip(inner, here, staging, depth + 1, out, progress)
                continue
            staging.mkdir(parents=True, exist_ok=True)
            copy = staging / f"{len(out._archives)}-{name}"
            try:
                _copy_out(archive, info, copy, progress)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged download
                out.refused.append(f"{here} (cannot be read from its archive: {exc})")
                continue
            _walk_zip_file(copy, here, staging, depth + 1, out, progress)
            continue
        out.files.append(
            FileRef(
                name=name, where=here, archive=archive, member=info.filename, size=info.file_size
            )
        )


def _walk_zip_file(
    path: Path, where: str, staging: Path, depth: int, out: Collected, progress: bool = False
) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a member name not UTF-8, too
        out.refused.append(f"{where} (not a readable zip: {exc})")
        return
    out._archives.append(archive)
    _walk_zip(archive, where, staging, depth, out, progress)


def _walk_folder(
    folder: Path, staging: Path, skip: tuple[Path, ...], out: Collected, progress: bool = False
) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):  # symlinked folders are not followed
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not is_junk(d) and (here / d).resolve() not in skip
        )
        for name in sorted(filenames):
            if is_junk(name):
                continue
            path = here / name
            if not path.is_file():
                continue
            if name.lower().endswith(".zip"):
                _walk_zip_file(path, str(path), staging, 1, out, progress)
            else:
                out.files.append(
                    FileRef(name=name, where=str(path), path=path, size=path.stat().st_size)
                )


def collect(
    source: Path, staging: Path, skip: tuple[Path, ...] = (), progress: bool = False
) -> Collected:
    """Every regular file of `source` (a zip, or a folder of zips and/or files).

    Args:
        source: the downloaded archive, a folder holding the inner zips, or an unpacked copy.
        staging: a folder for copies of inner zips (the caller removes it).
        skip: folders not to walk (resolved), e.g. the output folder inside the source.
        progress: a progress bar (bytes) per inner zip copied to `staging`.
    """
    out = Collected()
    if not source.is_dir():  # a FIFO would block zipfile's open; a device never ends
        check_input_file(source, what="release archive", max_bytes=MAX_RELEASE_BYTES)
    if source.is_dir():
        _walk_folder(source, staging, tuple(p.resolve() for p in skip), out, progress)
    else:
        _walk_zip_file(source, source.name, staging, 1, out, progress)
    return out
