"""Find replays in files, folders and archives, with a hard cap on the bytes any one of them may take.

Files and zip members are found as references (:class:`ReplayRef`): whoever reads one, an ingest worker, opens the
file or member itself, so the process that lists them never holds their bytes. tar and 7z archives can only be
read from their start, so their members are streamed here one at a time, as bytes (:class:`ReplayBlob`).

Every read is bounded by the bytes actually inflated, never by the size an archive declares: at most
``MAX_REPLAY_BYTES`` per member, inflated ``CHUNK`` bytes at a time. A member that declares more, or inflates past
what it declares, is refused (a :class:`SourceFailure` that says why), never cut short. Folders are searched
recursively in sorted order; symbolic links are not followed out of the folder, nor into linked folders.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import lzma
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from meleewm.errors import MeleewmError

REPLAY_SUFFIXES = (".slp",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar.zstd")
ARCHIVE_SUFFIXES = (".zip", ".7z", *TAR_SUFFIXES)
# The longest real replay here is 4.2 MB (an 8-minute game); 64 MiB is a game of well over half an hour. Anything
# larger is refused rather than loaded: one member may never cost more memory than this.
MAX_REPLAY_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024  # bytes inflated per step, so that a bomb is caught before it costs more than this
SEVEN_ZIP_GROUP_BYTES = 64 * 1024 * 1024  # declared bytes of the 7z members extracted together


class SourceError(MeleewmError):
    """A path that is not a replay, folder or readable archive."""


UNREADABLE = "unreadable source"
OVERSIZE = "over the size cap"  # the quarantine reason of a member that is, or inflates, past MAX_REPLAY_BYTES


class MemberError(MeleewmError):
    """A file or archive member that cannot be read within the limits; the message says why."""

    def __init__(self, message: str, reason: str = UNREADABLE):
        super().__init__(message)
        self.reason = reason


def name_bytes(name: str) -> bytes:
    """The bytes of a name as the file system or archive gave them (undecodable bytes are surrogate escapes)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def source_fields(source: str) -> dict:
    """How a source name is stored: ``source``, printable UTF-8 (undecodable bytes shown as ``\\xNN``), and
    ``source_bytes``, the exact bytes when the name is not valid UTF-8 (else None), so nothing is lost."""
    raw = name_bytes(source)
    display = raw.decode("utf-8", "backslashreplace")
    return {"source": display, "source_bytes": None if display == source else raw}


@dataclass(frozen=True)
class ReplayRef:
    """A replay file, or a member of a zip, not read yet: :meth:`read` opens and reads it (in a worker)."""
    source: str               # "path" or "archive::member"
    path: str                 # the file, or the zip that holds the member
    member: str | None = None
    size: int = 0             # as declared (zip) or as on disk: for batching only, never trusted for reads

    def read(self) -> bytes:
        if self.member is None:
            return _read_file(Path(self.path))
        try:
            info = _open_zip(self.path).getinfo(self.member)
        except (OSError, zipfile.BadZipFile, KeyError) as error:
            raise MemberError(f"archive or member no longer readable: {type(error).__name__}: {error}") from None
        return _read_zip_member(_open_zip(self.path), info)


@dataclass(frozen=True)
class ReplayBlob:
    """A replay already read (a member of a tar or 7z stream)."""
    source: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class SourceFailure:
    """A path, archive or member that could not be read at all; ingest quarantines it and goes on."""
    source: str
    error: str
    reason: str = UNREADABLE


Replay = ReplayRef | ReplayBlob


def _is_replay(name: str) -> bool:
    return name.lower().endswith(REPLAY_SUFFIXES)


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _too_large(size: int) -> str:
    return f"{size:,} bytes: larger than the {MAX_REPLAY_BYTES:,}-byte cap on one replay"


# -- files --------------------------------------------------------------------------------------------------------

def _read_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            # Read what the file holds now, plus a byte that shows it grew since: a read of the cap itself would
            # allocate 64 MiB a file, 5x the cost of reading a 3 MB replay. A file that grew is read on, to the cap.
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(min(size, MAX_REPLAY_BYTES) + 1)
            if len(data) > size:
                data += handle.read(MAX_REPLAY_BYTES + 1 - len(data))
    except OSError as error:
        raise MemberError(f"{type(error).__name__}: {error.strerror or error}") from None
    if len(data) > MAX_REPLAY_BYTES:
        raise MemberError(f"file of over {_too_large(MAX_REPLAY_BYTES)}", OVERSIZE)
    return data


# -- zip ----------------------------------------------------------------------------------------------------------

_open_zips: dict[tuple, zipfile.ZipFile] = {}


def _open_zip(path: str) -> zipfile.ZipFile:
    """An open zip, kept per process: a worker reads many members of one archive. Keyed by pid, so that a forked
    worker never shares its parent's file offset, and by size and time, so that a rewritten zip is reopened."""
    status = os.stat(path)
    key = (os.getpid(), path, status.st_size, status.st_mtime_ns)
    if key not in _open_zips:
        if len(_open_zips) >= 4:
            _open_zips.pop(next(iter(_open_zips))).close()
        _open_zips[key] = zipfile.ZipFile(path)
    return _open_zips[key]


def close_archives() -> None:
    """Close the zips this process keeps open."""
    while _open_zips:
        _open_zips.popitem()[1].close()


def _decompressor(compress_type: int, raw):
    if compress_type == zipfile.ZIP_DEFLATED:
        return zlib.decompressobj(-zlib.MAX_WBITS)
    if compress_type == zipfile.ZIP_BZIP2:
        return bz2.BZ2Decompressor()
    if compress_type == zipfile.ZIP_LZMA:
        # zip's LZMA framing: version (2 bytes), properties size (2 bytes), properties, then a raw LZMA1 stream.
        _, size = struct.unpack("<HH", raw.read(4))
        filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, raw.read(size))]  # noqa: SLF001
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    raise MemberError(f"unsupported zip compression method {compress_type}")


def _inflate(decompressor, data: bytes) -> Iterator[bytes]:
    """What ``decompressor`` makes of ``data``, at most CHUNK bytes at a time: a bomb never inflates at once."""
    if hasattr(decompressor, "unconsumed_tail"):  # zlib
        yield decompressor.decompress(data, CHUNK)
        while decompressor.unconsumed_tail:
            yield decompressor.decompress(decompressor.unconsumed_tail, CHUNK)
        return
    if decompressor.eof:
        return
    yield decompressor.decompress(data, CHUNK)
    while not decompressor.eof and not decompressor.needs_input:
        yield decompressor.decompress(b"", CHUNK)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, inflated here with a hard cap (zipfile's own bzip2 and LZMA reads inflate a whole input
    chunk at once, which a bomb turns into gigabytes)."""
    if info.flag_bits & 0x1:
        raise MemberError("encrypted member")
    if info.file_size > MAX_REPLAY_BYTES:
        raise MemberError(f"member declares {_too_large(info.file_size)}", OVERSIZE)
    # The member's stored bytes, through zipfile's header checks: the same member, read as if not compressed.
    stored = copy.copy(info)
    stored.compress_type, stored.file_size = zipfile.ZIP_STORED, info.compress_size
    del stored.CRC  # checked below, on the inflated bytes
    out = bytearray()
    try:
        with archive.open(stored) as raw:
            decompressor = None if info.compress_type == zipfile.ZIP_STORED else _decompressor(info.compress_type, raw)
            while chunk := raw.read(CHUNK):
                for piece in (chunk,) if decompressor is None else _inflate(decompressor, chunk):
                    out += piece
                    if len(out) > info.file_size:
                        raise MemberError(f"member inflates past the {info.file_size:,} bytes it declares: refused",
                                          OVERSIZE)
    except MemberError:
        raise
    except Exception as error:  # noqa: BLE001 - any damage to one member is that member's failure
        raise MemberError(f"{type(error).__name__}: {error}") from None
    if len(out) != info.file_size:
        raise MemberError(f"member inflates to {len(out):,} bytes, not the {info.file_size:,} it declares")
    if zlib.crc32(out) != info.CRC:
        raise MemberError("CRC check failed")
    return bytes(out)


def _zip_members(path: Path) -> Iterator[ReplayRef]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    for info in infos:
        if not info.is_dir() and _is_replay(info.filename):
            yield ReplayRef(f"{path}::{info.filename}", str(path), info.filename, info.file_size)


# -- tar ----------------------------------------------------------------------------------------------------------

_STREAM_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


def _open_decompressed(path: Path):
    """The tar stream inside ``path``, found by its magic bytes. These readers inflate only what is asked of them
    (tarfile's own ``r|*`` inflates a whole input block at once)."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    for prefix, opener in _STREAM_MAGIC:
        if magic.startswith(prefix):
            return opener(path, "rb")
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def _tar_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    with _open_decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isfile() or not _is_replay(member.name):
                continue
            source = f"{path}::{member.name}"
            if member.size > MAX_REPLAY_BYTES:
                yield SourceFailure(source, f"member of {_too_large(member.size)}", OVERSIZE)
                continue
            handle = archive.extractfile(member)
            yield ReplayBlob(source, handle.read(member.size) if handle else b"")


# -- 7z -----------------------------------------------------------------------------------------------------------

def _7z_members(path: Path) -> Iterator[ReplayBlob | SourceFailure]:
    import py7zr
    from py7zr.io import BytesIOFactory, Py7zBytesIO

    class CappedIO(Py7zBytesIO):
        """Keeps at most ``limit`` bytes and remembers whether more came (py7zr's own class drops them silently)."""
        overflow = False

        def write(self, data) -> int:
            if self.size() + len(data) > self.limit:
                self.overflow = True
                return len(data)
            return super().write(data)

    class CappedFactory(BytesIOFactory):
        def create(self, filename: str) -> CappedIO:
            self.products[filename] = CappedIO(filename, self.limit)
            return self.products[filename]

    with py7zr.SevenZipFile(path) as archive:
        listed = sorted((f.filename, f.uncompressed or 0) for f in archive.list()
                        if not f.is_directory and _is_replay(f.filename))
    groups: list[list[str]] = [[]]
    group_bytes = 0
    for name, size in listed:
        if size > MAX_REPLAY_BYTES:
            yield SourceFailure(f"{path}::{name}", f"member declares {_too_large(size)}", OVERSIZE)
            continue
        # Solid 7z blocks decompress sequentially; members are extracted in groups of bounded declared size.
        if groups[-1] and (group_bytes + size > SEVEN_ZIP_GROUP_BYTES or len(groups[-1]) >= 64):
            groups.append([])
            group_bytes = 0
        groups[-1].append(name)
        group_bytes += size
    for group in filter(None, groups):
        factory = CappedFactory(MAX_REPLAY_BYTES)
        with py7zr.SevenZipFile(path) as archive:
            archive.extract(targets=group, factory=factory)
        for name in group:
            product = factory.products.get(name)
            source = f"{path}::{name}"
            if product is None:
                yield SourceFailure(source, "member could not be extracted")
            elif product.overflow:
                yield SourceFailure(source, f"member inflates past the {MAX_REPLAY_BYTES:,}-byte cap: refused",
                                    OVERSIZE)
            else:
                product.seek(0)
                yield ReplayBlob(source, product.read())
        del factory


def _archive_members(path: Path) -> Iterator[Replay | SourceFailure]:
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


# -- the walk -----------------------------------------------------------------------------------------------------

def _folder_inputs(root: Path) -> Iterator[Path | SourceFailure]:
    """Replays and archives under ``root``, sorted. Linked folders are not entered (they could loop, or lead
    anywhere); a linked file is read only when its target lies inside ``root``."""
    inside = root.resolve()
    found: list[Path] = []
    for folder, _, files in os.walk(root):  # os.walk does not follow links to folders
        found.extend(Path(folder) / name for name in files if _is_replay(name) or _is_archive(name))
    for child in sorted(found):
        if child.is_symlink() and not child.resolve().is_relative_to(inside):
            yield SourceFailure(str(child), "symbolic link to a file outside the input folder: not followed")
        else:
            yield child


def _inputs(paths: Iterable[str | Path]) -> Iterator[Path | SourceFailure]:
    """Every input under ``paths``, in a deterministic order: replays and archives found in folders, and any file
    named explicitly (tried as a replay unless it is an archive)."""
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            yield from _folder_inputs(path)
        elif path.is_file():
            yield path
        else:
            raise SourceError(f"no such file or folder: {path}")


def iter_replays(paths: Iterable[str | Path]) -> Iterator[Replay | SourceFailure]:
    """Every replay under ``paths`` (files, folders, archives), in a deterministic order."""
    for found in _inputs(paths):
        if isinstance(found, SourceFailure):
            yield found
        elif _is_archive(found.name):
            yield from _archive_members(found)
        else:
            yield ReplayRef(str(found), str(found), None, found.stat().st_size if found.exists() else 0)


def count_replays(paths: Iterable[str | Path]) -> int | None:
    """How many items :func:`iter_replays` will yield, when that is cheap to know (files, folders, zips);
    None when a streamed archive (tar, 7z) would have to be read through to count."""
    total = 0
    for found in _inputs(paths):
        if isinstance(found, SourceFailure) or not _is_archive(found.name):
            total += 1
        elif found.name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(found) as members:
                    total += sum(not i.is_dir() and _is_replay(i.filename) for i in members.infolist())
            except (zipfile.BadZipFile, OSError):
                total += 1  # iter_replays reports it as one unreadable source
        else:
            return None
    return total
