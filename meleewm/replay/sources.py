"""Find replays in files, folders and archives, and yield their bytes one at a time.

Archives are streamed member by member (never unpacked to disk), so a 100 GB ``.tar.zst`` costs one replay of
memory. Folders are searched recursively, in sorted order, for replays and for archives of replays.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPLAY_SUFFIXES = (".slp",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar.zstd")
ARCHIVE_SUFFIXES = (".zip", ".7z", *TAR_SUFFIXES)
# A member larger than this is no replay (a long full game is ~5 MB); refuse it rather than load it.
MAX_REPLAY_BYTES = 256 * 1024 * 1024


class SourceError(Exception):
    """A path that is not a replay, folder or readable archive."""


@dataclass(frozen=True)
class ReplayBlob:
    source: str   # "path" or "archive::member"
    data: bytes


@dataclass(frozen=True)
class SourceFailure:
    """An archive or member that could not be read at all; ingest quarantines it and goes on."""
    source: str
    error: str


def _is_replay(name: str) -> bool:
    return name.lower().endswith(REPLAY_SUFFIXES)


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _zip_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not _is_replay(info.filename):
                continue
            source = f"{path}::{info.filename}"
            if info.file_size > MAX_REPLAY_BYTES:
                yield SourceFailure(source, f"member of {info.file_size} bytes is too large to be a replay")
                continue
            try:
                yield ReplayBlob(source, archive.read(info))
            except (zipfile.BadZipFile, OSError, EOFError) as error:  # noqa: PERF203
                yield SourceFailure(source, f"{type(error).__name__}: {error}")


def _tar_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    name = path.name.lower()
    if name.endswith((".tar.zst", ".tar.zstd")):
        import zstandard

        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield from _stream_tar(path, tarfile.open(fileobj=stream, mode="r|"))
    else:
        with tarfile.open(path, mode="r|*") as archive:
            yield from _stream_tar(path, archive)


def _stream_tar(path: Path, archive: tarfile.TarFile) -> Iterator[ReplayBlob | SourceFailure]:
    for member in archive:
        if not member.isfile() or not _is_replay(member.name):
            continue
        source = f"{path}::{member.name}"
        if member.size > MAX_REPLAY_BYTES:
            yield SourceFailure(source, f"member of {member.size} bytes is too large to be a replay")
            continue
        handle = archive.extractfile(member)
        yield ReplayBlob(source, handle.read() if handle else b"")


def _7z_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    import py7zr
    from py7zr.io import BytesIOFactory

    with py7zr.SevenZipFile(path) as archive:
        names = sorted(n for n in archive.getnames() if _is_replay(n))
    # Solid 7z blocks decompress sequentially; extract in groups so memory stays bounded.
    for start in range(0, len(names), 64):
        group = names[start:start + 64]
        factory = BytesIOFactory(MAX_REPLAY_BYTES)
        with py7zr.SevenZipFile(path) as archive:
            archive.extract(targets=group, factory=factory)
        for name in group:
            product = factory.products.get(name)
            if product is None:
                yield SourceFailure(f"{path}::{name}", "member could not be extracted")
                continue
            product.seek(0)
            yield ReplayBlob(f"{path}::{name}", product.read())


def _archive_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            yield from _zip_members(path)
        elif name.endswith(".7z"):
            yield from _7z_members(path)
        else:
            yield from _tar_members(path)
    except Exception as error:  # noqa: BLE001 - any broken archive is reported, never fatal
        yield SourceFailure(str(path), f"unreadable archive: {type(error).__name__}: {error}")


def _inputs(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """(file, is_archive) for every input under ``paths``, in a deterministic order: replays and archives found
    in folders, and any file named explicitly (tried as a replay unless it is an archive)."""
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if _is_replay(child.name) or _is_archive(child.name):
                    yield child, _is_archive(child.name)
        elif path.is_file():
            yield path, _is_archive(path.name)
        else:
            raise SourceError(f"no such file or folder: {path}")


def iter_replays(paths: Iterable[str | Path]) -> Iterator[ReplayBlob | SourceFailure]:
    """Every replay under ``paths`` (files, folders, archives), in a deterministic order."""
    for path, archive in _inputs(paths):
        if archive:
            yield from _archive_members(path)
        else:
            yield _read_file(path)


def count_replays(paths: Iterable[str | Path]) -> int | None:
    """How many replays :func:`iter_replays` will yield, when that is cheap to know (files, folders, zips);
    None when a streamed archive (tar, 7z) would have to be read through to count."""
    total = 0
    for path, archive in _inputs(paths):
        if not archive:
            total += 1
        elif path.name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(path) as members:
                    total += sum(_is_replay(n) for n in members.namelist())
            except (zipfile.BadZipFile, OSError):
                total += 1  # iter_replays reports it as one unreadable source
        else:
            return None
    return total


def _read_file(path: Path) -> ReplayBlob | SourceFailure:
    try:
        size = path.stat().st_size
        if size > MAX_REPLAY_BYTES:
            return SourceFailure(str(path), f"file of {size} bytes is too large to be a replay")
        return ReplayBlob(str(path), path.read_bytes())
    except OSError as error:
        return SourceFailure(str(path), f"{type(error).__name__}: {error}")
