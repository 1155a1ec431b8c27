"""Byte-level edits of real Slippi replays, for tests that need a specific broken or hostile file."""

from __future__ import annotations

import struct
import zlib

from meleewm.replay.reader import SLIPPI_MAGIC

RAW_START = len(SLIPPI_MAGIC) + 4  # the magic, then the raw element's length (uint32, big-endian)
EVENT_PAYLOADS, GAME_START, POST_FRAME = 0x35, 0x36, 0x38
# Offsets inside a post-frame update event (from its command byte), from the Slippi spec.
POST_FIELDS = {"post_state": (0x08, ">H"), "post_position_x": (0x0A, ">f"), "post_position_y": (0x0E, ">f"),
               "post_percent": (0x16, ">f"), "post_shield": (0x1A, ">f"), "post_stocks": (0x21, ">B")}


def payload_sizes(data: bytes) -> dict[int, int]:
    """The Event Payloads table: command byte -> payload size."""
    assert data[RAW_START] == EVENT_PAYLOADS
    table_size = data[RAW_START + 1]
    sizes = {EVENT_PAYLOADS: table_size}
    for i in range(RAW_START + 2, RAW_START + 1 + table_size, 3):
        sizes[data[i]] = struct.unpack(">H", data[i + 1:i + 3])[0]
    return sizes


def event_offsets(data: bytes, command: int) -> list[int]:
    """Offsets of every event of ``command`` in the raw element."""
    sizes = payload_sizes(data)
    raw_length = struct.unpack(">I", data[len(SLIPPI_MAGIC):RAW_START])[0]
    offsets, at = [], RAW_START
    while at < RAW_START + raw_length and data[at] in sizes:
        if data[at] == command:
            offsets.append(at)
        at += 1 + sizes[data[at]]
    return offsets


def with_post_value(data: bytes, name: str, value, frames: slice = slice(None)) -> bytes:
    """A copy whose post-frame ``name`` holds ``value`` in the post-frame events ``frames`` selects."""
    offset, fmt = POST_FIELDS[name]
    patched = bytearray(data)
    for at in event_offsets(data, POST_FRAME)[frames]:
        patched[at + offset:at + offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(patched)


def with_version(data: bytes, version: tuple[int, int, int]) -> bytes:
    """A copy whose Game Start claims another Slippi version."""
    [start] = event_offsets(data, GAME_START)
    patched = bytearray(data)
    patched[start + 1:start + 4] = bytes(version)
    return bytes(patched)


def zip_with_member(name: str, payload: bytes, method: int, crc: int, declared_size: int) -> bytes:
    """A one-member zip whose headers declare ``declared_size`` whatever ``payload`` inflates to."""
    encoded = name.encode()
    fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0, crc, len(payload), declared_size, len(encoded), 0)
    local = b"PK\x03\x04" + fields + encoded + payload
    central = (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, 0) + encoded)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def deflate_bomb(megabytes: int) -> bytes:
    """Raw deflate of ``megabytes`` MiB of zeros (about 1 KB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(megabytes)) + compressor.flush()
