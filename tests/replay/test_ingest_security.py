"""Hostile inputs to ingest: undecodable names, archive bombs, garbage values, killed drivers, links out of the
input folder, and the bookkeeping of failures (issue 9, items 4-7 and 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from meleewm.replay import sources
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from meleewm.replay.sources import OVERSIZE
from tests.conftest import extract_members, pick_members
from tests.replay.slippi_bytes import deflate_bomb, with_post_value, zip_with_member
from tests.replay.conftest import comparable

# 1 GiB of zeros, bzip2-compressed (785 bytes; made once with bz2.BZ2Compressor(9), 1024 x 1 MiB of zeros, as
# compressing it in the test would take half a minute). zipfile inflates a whole bzip2 input chunk at once.
BZIP2_GIB_OF_ZEROS = bytes.fromhex(
    "425a68393141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e40"
    "00c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a8097"
    "3141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c00000"
    "08200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a809731415926"
    "53590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030"
    "804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09"
    "e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642"
    "a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f"
    "8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a"
    "80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0"
    "000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141"
    "592653590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c000000820"
    "0030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a8097314159265359"
    "0e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d"
    "4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a8097314159265359487c5fc9"
    "008a52c800c00000040008200030cc0529a69122436144890f177245385090f688e402")
GIB_OF_ZEROS_CRC = 1533330096


def _write(folder: Path, name: bytes, data: bytes) -> None:
    """A file whose name is given as raw bytes (they need not decode as UTF-8)."""
    with open(os.fsencode(folder) + b"/" + name, "wb") as handle:
        handle.write(data)


def _by_name(out: Path) -> dict[str, dict]:
    return {Path(q["source"].split("::")[-1]).name: q for q in Dataset(out).quarantine()}


# -- item 4: names that are not UTF-8 ------------------------------------------------------------------------------

def test_a_name_that_is_not_utf8_is_stored_losslessly(small_games, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good, odd = small_games[0].read_bytes(), small_games[1].read_bytes()
    (folder / "good.slp").write_bytes(good)
    odd_name = b"caf\xe9 \xff.slp"  # Latin-1 bytes: not UTF-8
    _write(folder, odd_name, odd)
    _write(folder, b"bad \xfe.slp", b"not a replay")
    stats = ingest([folder], tmp_path / "ds")
    assert stats.ingested == 2
    games = {Path(g["source"]).name: g for g in Dataset(tmp_path / "ds").games.to_pylist()}
    assert games["good.slp"]["source_bytes"] is None
    stored = games["caf\\xe9 \\xff.slp"]
    assert stored["source_bytes"] == os.fsencode(folder) + b"/" + odd_name
    [entry] = Dataset(tmp_path / "ds").quarantine()
    assert bytes.fromhex(entry["source_hex"]) == os.fsencode(folder) + b"/bad \xfe.slp"
    assert ingest([folder], tmp_path / "ds").duplicates == 2  # and a re-run does not crash either


def test_a_tar_member_name_that_is_not_utf8_is_ingested(small_games, tmp_path):
    path = tmp_path / "games.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for name, game in (("good.slp", small_games[0]), ("odd \udcff.slp", small_games[1])):
            info = tar.gettarinfo(game, arcname=name)
            with open(game, "rb") as handle:
                tar.addfile(info, handle)
    assert ingest([path], tmp_path / "ds").ingested == 2
    sources_ = {g["source"].split("::")[1]: g["source_bytes"] for g in Dataset(tmp_path / "ds").games.to_pylist()}
    assert sources_["good.slp"] is None
    assert sources_["odd \\xff.slp"].endswith(b"::odd \xff.slp")


# -- item 5: archive bombs -----------------------------------------------------------------------------------------

def _peak_rss_mb(script: str) -> tuple[float, str]:
    """Run ``script`` in a fresh interpreter; its peak resident memory in MB (children included) and output."""
    probe = script + "\nimport resource\nprint('PEAK', max(resource.getrusage(w).ru_maxrss for w in " \
                     "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split("PEAK")[-1]), done.stdout


def test_a_bzip2_zip_bomb_is_quarantined_in_bounded_memory(small_games, tmp_path):
    bomb = tmp_path / "bomb.zip"
    # Declares the size of a real replay; inflates to 1 GiB.
    bomb.write_bytes(zip_with_member("game.slp", BZIP2_GIB_OF_ZEROS, zipfile.ZIP_BZIP2, GIB_OF_ZEROS_CRC, 300_000))
    script = f"from meleewm.replay.ingest import ingest; ingest([{str(bomb)!r}, {str(small_games[0])!r}], " \
             f"{str(tmp_path / 'ds')!r})"
    baseline, _ = _peak_rss_mb("import meleewm.replay.ingest")
    peak, _ = _peak_rss_mb(script)
    assert peak - baseline < 150, f"ingest of a 1 GiB bomb peaked at {peak:.0f} MB (imports alone: {baseline:.0f})"
    entry = _by_name(tmp_path / "ds")["game.slp"]
    assert entry["reason"] == OVERSIZE and "inflates past the 300,000 bytes it declares" in entry["error"]
    assert len(Dataset(tmp_path / "ds").games) == 1


def test_a_deflate_member_that_inflates_past_its_size_is_refused(tmp_path):
    payload = deflate_bomb(16)
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_with_member("game.slp", payload, zipfile.ZIP_DEFLATED, 0, 100_000))
    stats = ingest([bomb], tmp_path / "ds")
    assert stats.quarantined[OVERSIZE] == 1
    assert "inflates past the 100,000 bytes" in _by_name(tmp_path / "ds")["game.slp"]["error"]


def test_members_over_the_cap_are_refused_not_cut(small_games, tmp_path, monkeypatch):
    import py7zr

    monkeypatch.setattr(sources, "MAX_REPLAY_BYTES", small_games[0].stat().st_size // 2)
    archives = tmp_path / "archives"
    archives.mkdir()
    with py7zr.SevenZipFile(archives / "games.7z", "w") as archive:
        archive.write(small_games[0], arcname="in.7z.slp")
    with tarfile.open(archives / "games.tar.bz2", "w:bz2") as tar:
        tar.add(small_games[0], arcname="in.tar.slp")
    with zipfile.ZipFile(archives / "games.zip", "w", zipfile.ZIP_BZIP2) as archive:
        archive.write(small_games[0], arcname="in.zip.slp")
    stats = ingest([archives], tmp_path / "ds")
    assert stats.ingested == 0 and stats.quarantined[OVERSIZE] == 3
    for entry in Dataset(tmp_path / "ds").quarantine():
        assert "cap" in entry["error"] and entry["sha256"] is None


def test_archives_stream_within_the_cap(small_games, tmp_path):
    """The capped readers give the same bytes as the plain ones, for every compression."""
    archives = tmp_path / "archives"
    archives.mkdir()
    for kind in ("gz", "bz2", "xz"):
        with tarfile.open(archives / f"games.tar.{kind}", f"w:{kind}") as tar:
            tar.add(small_games[0], arcname=f"{kind}.slp")
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        with zipfile.ZipFile(archives / f"games-{method}.zip", "w", method) as archive:
            archive.write(small_games[1], arcname=f"zip-{method}.slp")
    blobs = {Path(b.source).name: b.read() for b in sources.iter_replays([archives])}
    assert len(blobs) == 7
    for name, data in blobs.items():
        expected = small_games[1] if "zip" in name else small_games[0]
        assert data == expected.read_bytes(), name


# -- item 6: garbage values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [("post_position_x", 1e30), ("post_position_y", float("inf")),
                                              ("post_percent", float("nan")), ("post_shield", -5.0),
                                              ("post_stocks", 200), ("post_state", 60000)])
def test_garbage_values_are_quarantined(small_games, tmp_path, field, value):
    mutated = tmp_path / "mutated.slp"
    mutated.write_bytes(with_post_value(small_games[0].read_bytes(), field, value, slice(200, 201)))
    stats = ingest([mutated, small_games[1]], tmp_path / "ds")
    assert stats.ingested == 1
    entry = _by_name(tmp_path / "ds")["mutated.slp"]
    assert entry["reason"] == "implausible values" and field in entry["error"]


# -- item 7: a killed driver ---------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker pids from /proc")
def test_killing_the_driver_stops_its_workers_and_commits_nothing_more(replays, manifest, tmp_path):
    names = pick_members(manifest, "games-1.zip", 12)
    inputs = tmp_path / "in"
    extract_members(replays / "games-1.zip", names, inputs)
    reference = tmp_path / "reference"
    ingest([inputs], reference)
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "meleewm.cli", "ingest", str(inputs), "--out", str(killed), "--workers", "2",
               "--batch-size", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        workers = _children(driver.pid) or workers
        if len(list((killed / "games").glob("*.parquet"))) >= 2 and len(workers) == 2:
            break
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(workers) == 2, "the kill landed while both workers ran"
    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # leave no process behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived their driver"
    after_kill = _listing(killed)
    committed = len(Dataset(killed).games)
    assert 0 < committed < len(names), "the kill landed mid-run"
    time.sleep(1.0)
    assert _listing(killed) == after_kill, "something was written after the driver died"
    if os.path.isdir("/dev/shm"):  # other programs may use it too: look for replays only
        left = {name for name in set(os.listdir("/dev/shm")) - shm_before if name.endswith(".slp")}
        assert not left, "a temporary replay was left in /dev/shm"

    stats = ingest([inputs], killed, workers=2)
    assert stats.duplicates == committed and stats.ingested == len(names) - committed
    killed_games, killed_frames = comparable(Dataset(killed))
    reference_games, reference_frames = comparable(Dataset(reference))
    assert killed_games == reference_games
    for game_id, table in reference_frames.items():
        assert killed_frames[game_id].equals(table)


# -- item 11: bookkeeping ------------------------------------------------------------------------------------------

def test_an_unreadable_source_is_logged_once(small_games, tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    first = ingest([broken, small_games[0]], tmp_path / "ds")
    second = ingest([broken, small_games[0]], tmp_path / "ds")
    assert first.quarantined["unreadable source"] == 1
    assert not second.quarantined and second.already_quarantined == 1 and second.duplicates == 1
    assert len(Dataset(tmp_path / "ds").quarantine()) == 1
    third = ingest([broken], tmp_path / "ds", retry_quarantined=True)
    assert third.quarantined["unreadable source"] == 1


def test_copies_of_a_file_quarantined_in_the_same_run_are_not_counted_as_stored(small_games, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    truncated = small_games[0].read_bytes()[:20_000]
    for name in ("a.slp", "b.slp", "c.slp"):
        (folder / name).write_bytes(truncated)
    (folder / "d.slp").write_bytes(small_games[1].read_bytes())
    (folder / "e.slp").write_bytes(small_games[1].read_bytes())
    stats = ingest([folder], tmp_path / "ds", batch_size=2)
    assert stats.ingested == 1 and stats.duplicates == 1
    assert sum(stats.quarantined.values()) == 1 and stats.already_quarantined == 2


def test_links_out_of_the_input_folder_are_not_followed_and_contents_never_logged(small_games, tmp_path):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("SECRET-TOKEN-0123456789 and more private text\n")
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "leak.slp").symlink_to(secret)
    (folder / "linked-folder").symlink_to(secret.parent, target_is_directory=True)
    (folder / "inside.slp").symlink_to(small_games[0])  # a link to a file outside too
    (folder / "sub" / "game.slp").write_bytes(small_games[1].read_bytes())
    (folder / "sub" / "again.slp").symlink_to(folder / "sub" / "game.slp")  # inside: followed
    (folder / "notes.slp").write_text("PRIVATE-NOTES-987 this is a text file, not a replay\n")
    stats = ingest([folder], tmp_path / "ds")
    assert stats.ingested == 1 and stats.duplicates == 1
    entries = _by_name(tmp_path / "ds")
    assert "not followed" in entries["leak.slp"]["error"] and entries["leak.slp"]["sha256"] is None
    assert "not followed" in entries["inside.slp"]["error"]
    assert entries["notes.slp"]["reason"] == "not a Slippi replay"
    written = b"".join(p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file())
    assert b"SECRET-TOKEN" not in written and b"PRIVATE-NOTES" not in written
    assert b"this is a text" not in written and b"PRIV" not in written


def test_peppi_messages_that_quote_bytes_are_not_logged_verbatim(tmp_path):
    from meleewm.replay.reader import _QUOTED_BYTES

    message = "OSError: invalid data: expected: [123, 85, 3, 114], got: [84, 104, 105, 115]"
    assert _QUOTED_BYTES.sub("[...]", message) == "OSError: invalid data: expected: [...], got: [...]"


def test_quarantine_lines_are_json_with_printable_sources(small_games, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder, b"\x80\x81.slp", b"")
    ingest([folder], tmp_path / "ds")
    [line] = (tmp_path / "ds" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    assert entry["source"].endswith("\\x80\\x81.slp") and entry["reason"] == "empty file"
    assert bytes.fromhex(entry["source_hex"]).endswith(b"\x80\x81.slp")
