"""Nothing half-written is visible: every file meleewm writes for others to read goes through :func:`atomic_write`.

The data goes to a temporary name beside the destination (``.NAME.<random>.tmp``, so concurrent writers never
share one, and cleaners can recognise leftovers), is flushed to disk, and is renamed over the destination in one
step. A failed write removes its temporary file; a killed one leaves only that dot-file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """A temporary path to write in full; when the block ends without an error it replaces ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as handle:   # on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"))
