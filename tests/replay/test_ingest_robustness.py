"""Bad input, kill-and-resume, re-runs, archive formats and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import zstandard
from peppi_py import read_slippi
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.replay.dataset import Dataset, DatasetError
from meleewm.replay.ingest import ingest
from meleewm.replay.reader import SLIPPI_MAGIC, ReplayError, parse_replay
from tests.conftest import extract_members, pick_members
from tests.replay.conftest import comparable


def _with_version(data: bytes, version: tuple[int, int, int]) -> bytes:
    """A copy of a replay whose Game Start claims another Slippi version."""
    header = len(SLIPPI_MAGIC) + 4
    assert data[header] == 0x35
    game_start = header + 1 + data[header + 1]
    assert data[game_start] == 0x36
    patched = bytearray(data)
    patched[game_start + 1:game_start + 4] = bytes(version)
    return bytes(patched)


def test_bad_files_are_quarantined_and_the_run_goes_on(small_games, replays, tmp_path):
    good = small_games[0].read_bytes()
    newest = next(p for p in small_games if read_slippi(str(p), skip_frames=True).start.slippi.version >= (3, 7, 0))
    newest = newest.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.slp").write_bytes(good[: len(good) * 6 // 10])
    (bad / "random.slp").write_bytes(os.urandom(50_000))
    (bad / "empty.slp").write_bytes(b"")
    (bad / "notes.slp").write_text("this is a text file, not a replay\n")
    (bad / "old_version.slp").write_bytes(_with_version(newest, (3, 3, 0)))
    out = tmp_path / "ds"
    stats = ingest([bad, *small_games], out)
    assert stats.ingested == len(small_games)
    reasons = {q["source"].rsplit("/", 1)[-1]: q for q in Dataset(out).quarantine()}
    assert reasons["empty.slp"]["reason"] == "empty file"
    assert reasons["notes.slp"]["reason"] == "not a Slippi replay"
    assert reasons["random.slp"]["reason"] == "not a Slippi replay"
    assert reasons["truncated.slp"]["reason"] in {"truncated or incomplete file", "corrupt replay"}
    assert reasons["old_version.slp"]["reason"].startswith("unsupported Slippi version")
    assert "3.3.0" in reasons["old_version.slp"]["error"]
    for entry in reasons.values():
        assert entry["error"] is not None and entry["sha256"]
    assert len(Dataset(out).games) == len(small_games)


def test_every_unreadable_file_is_quarantined_with_a_reason(replays, tmp_path):
    stats = ingest([replays / "unreadable.zip"], tmp_path / "ds")
    entries = Dataset(tmp_path / "ds").quarantine()
    assert stats.ingested == 0 and len(entries) == 34
    assert all(e["reason"] and e["source"] for e in entries)
    by_name = {e["source"].rsplit("/", 1)[-1]: e["reason"] for e in entries}
    assert by_name["test_game_1.slp"].startswith("unsupported Slippi version")
    assert by_name["Training.slp"] == "not a versus game"
    assert by_name["corrupt_game_1.slp"] == "not a Slippi replay"


def test_parse_errors_are_replay_errors():
    with pytest.raises(ReplayError, match="empty file"):
        parse_replay(b"", "x")
    with pytest.raises(ReplayError, match="not a Slippi replay"):
        parse_replay(b"PK\x03\x04 a zip", "x")


def test_kill_and_resume_gives_the_same_dataset(replays, manifest, tmp_path):
    names = pick_members(manifest, "games-1.zip", 10)
    inputs = tmp_path / "in"
    extract_members(replays / "games-1.zip", names, inputs)
    reference = tmp_path / "reference"
    ingest([inputs], reference, batch_size=1)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "meleewm.cli", "ingest", str(inputs), "--out", str(killed), "--batch-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((killed / "games").glob("*.parquet"))) >= 2:  # glob of a missing folder is empty
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = len(Dataset(killed).games)
    assert 0 < committed < len(names), "the kill landed mid-run"

    stats = ingest([inputs], killed, batch_size=1)
    assert stats.duplicates == committed and stats.ingested == len(names) - committed
    killed_games, killed_frames = comparable(Dataset(killed))
    reference_games, reference_frames = comparable(Dataset(reference))
    assert killed_games == reference_games
    assert killed_frames.keys() == reference_frames.keys()
    for game_id, table in reference_frames.items():
        assert killed_frames[game_id].equals(table)

    again = ingest([inputs], killed)
    assert again.ingested == 0 and again.duplicates == len(names)


def test_leftovers_of_a_killed_writer_are_invisible_and_cleaned(small_games, tmp_path):
    out = tmp_path / "ds"
    ingest(small_games[:2], out)
    (out / "frames" / "part-deadbeefdeadbeef.parquet").write_bytes(b"half a parquet file")
    (out / "games" / ".part-x.parquet.tmp").write_bytes(b"half")
    with open(out / "quarantine.jsonl", "a") as handle:
        handle.write('{"source": "cut sho')
    assert len(Dataset(out).games) == 2
    stats = ingest(small_games, out)
    assert stats.ingested == len(small_games) - 2 and stats.duplicates == 2
    assert not (out / "frames" / "part-deadbeefdeadbeef.parquet").exists()
    assert not list((out / "games").glob(".*.tmp"))


def test_same_game_twice_is_stored_once(small_games, tmp_path):
    copy = tmp_path / "copy of game (1) #2.slp"
    copy.write_bytes(small_games[0].read_bytes())
    stats = ingest([small_games[0], copy], tmp_path / "ds")
    assert stats.ingested == 1 and stats.duplicates == 1


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tar.zst", "7z", "zip-in-folder"])
def test_archive_formats(small_games, tmp_path, kind):
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    if kind == "tar.zst":
        path = archive_dir / "games.tar.zst"
        plain = tmp_path / "games.tar"
        with tarfile.open(plain, "w") as tar:
            for game in small_games:
                tar.add(game, arcname=f"2024-01/{game.name}")
        path.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    elif kind.startswith("tar"):
        path = archive_dir / f"games.{kind}"
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tar:
            for game in small_games:
                tar.add(game, arcname=f"2024-01/{game.name}")
    elif kind == "7z":
        import py7zr
        path = archive_dir / "games.7z"
        with py7zr.SevenZipFile(path, "w") as archive:
            for game in small_games:
                archive.write(game, arcname=f"2024-01/{game.name}")
    else:
        import zipfile
        path = archive_dir  # a folder holding a zip: folders are searched for archives too
        with zipfile.ZipFile(archive_dir / "games.zip", "w") as archive:
            for game in small_games:
                archive.write(game, arcname=f"2024-01/{game.name}")
    stats = ingest([path], tmp_path / "ds")
    assert stats.ingested == len(small_games)
    sources = sorted(g["source"] for g in Dataset(tmp_path / "ds").games.to_pylist())
    assert all("::2024-01/" in s for s in sources)


def test_broken_archive_is_quarantined(tmp_path, small_games):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    stats = ingest([broken, small_games[0]], tmp_path / "ds")
    assert stats.ingested == 1 and stats.quarantined["unreadable source"] == 1


def test_not_a_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "something.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a meleewm dataset"):
        Dataset(tmp_path)
    with pytest.raises(DatasetError, match="not empty and is not a meleewm dataset"):
        Dataset.create(tmp_path)


def test_cli_ingest_and_info(small_games, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(app, ["ingest", *map(str, small_games[:3]), "--out", str(out), "--workers", "2",
                                 "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "ingested" in result.output and "elapsed" in result.output
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    for section in ("games", "frames", "hours of play", "characters", "stages", "Slippi versions", "end methods"):
        assert section in result.output
    result = runner.invoke(app, ["info", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a meleewm dataset" in result.output
    result = runner.invoke(app, ["ingest", str(tmp_path / "no such folder"), "--out", str(tmp_path / "ds2")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    assert not (tmp_path / "ds2").exists()


def test_a_failed_part_write_raises_and_leaves_nothing(small_games, tmp_path):
    from meleewm.replay.dataset import PartWriter

    ingest(small_games[:1], tmp_path / "ds")
    game = parse_replay(small_games[1].read_bytes(), "x")
    broken = type(game)(game.record, game.frames.drop_columns(["frame"]), game.items, game.stage_events)
    writer = PartWriter(tmp_path / "ds")
    writer.add(game)
    writer.add(broken)  # a row group of another schema: the Parquet writer refuses it
    with pytest.raises(ValueError):
        writer.close()
    leftovers = [p for sub in ("frames", "items", "stage_events") for p in (tmp_path / "ds" / sub).iterdir()
                 if writer.name in p.name]
    assert leftovers == []
    assert len(Dataset(tmp_path / "ds").games) == 1
