"""``meleewm ingest --ray`` on a real two-node Ray cluster on 127.0.0.1: the same dataset as a local ingest,
batches parsed on both nodes, a killed driver resumed, and a re-run that adds nothing."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from tests.replay.conftest import comparable

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'meleewm[ray]'")

RAY = str(Path(sys.executable).with_name("ray"))
NODE_OPTIONS = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nodes_alive(address: str, env: dict) -> int:
    status = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True)
    return status.stdout.count(" node_")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a second node, each its own `ray start` process (group), on 127.0.0.1; the token that
    authenticates to them is in the returned environment. Teardown ends exactly these process groups."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    logs = tmp_path_factory.mktemp("ray-logs")
    nodes = []

    def start(name: str, *options: str) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            nodes.append(subprocess.Popen([RAY, "start", *options, *NODE_OPTIONS], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("head", "--head", f"--port={address.rsplit(':', 1)[1]}", "--node-ip-address=127.0.0.1",
              "--include-dashboard=false")
        deadline = time.monotonic() + 120
        while _nodes_alive(address, env) < 1:
            assert time.monotonic() < deadline, (logs / "head.log").read_text()[-3000:]
            time.sleep(1)
        start("second", f"--address={address}", "--node-ip-address=127.0.0.1")
        while _nodes_alive(address, env) < 2:
            assert time.monotonic() < deadline, (logs / "second.log").read_text()[-3000:]
            time.sleep(1)
        yield address, env
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
        for node in reversed(nodes):
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def _ingest_command(archive: Path, out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "meleewm.cli", "ingest", str(archive), "--out", str(out), "--ray", address,
            "--batch-size", "4"]


def _summary(stdout: str, row: str) -> int:
    """A count from the ingest command's summary table."""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells[0] == row:
            return int(cells[-1].replace(",", ""))
    raise AssertionError(f"no {row!r} row in:\n{stdout}")


def test_a_two_node_ray_ingest_equals_the_local_one_and_resumes(cluster, replays, tmp_path):
    address, env = cluster
    archive = replays / "games-1.zip"
    local = tmp_path / "local"
    ingest([archive], local, workers=1)

    # A driver killed mid-run, once it has committed a part: what it committed stays, the rest is redone.
    on_ray = tmp_path / "ray"
    killed = subprocess.Popen(_ingest_command(archive, on_ray, address), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while killed.poll() is None and not list((on_ray / "games").glob("*.parquet")):
        assert time.monotonic() < deadline, "no part committed in 180 s"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    committed = len(Dataset(on_ray).games)
    assert 0 < committed < len(Dataset(local).games), "the kill landed mid-run"

    resumed = subprocess.run(_ingest_command(archive, on_ray, address), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    nodes = [line for line in resumed.stdout.splitlines() if "batches parsed on Ray node" in line]
    assert len(nodes) == 2, f"batches ran on {len(nodes)} node(s), not on both:\n{resumed.stdout}"

    ray_games, ray_frames = comparable(Dataset(on_ray))
    local_games, local_frames = comparable(Dataset(local))
    assert ray_games == local_games
    assert ray_frames.keys() == local_frames.keys()
    for game_id, table in local_frames.items():
        assert ray_frames[game_id].equals(table), game_id
    assert _summary(resumed.stdout, "ingested") == len(local_games) - committed
    assert not (on_ray / ".ingest-claims").exists()

    again = subprocess.run(_ingest_command(archive, on_ray, address), env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout, "ingested") == 0
    assert _summary(again.stdout, "skipped (already in the dataset)") == len(local_games)
