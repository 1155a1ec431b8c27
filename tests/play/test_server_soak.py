"""``meleewm play`` in its own process (the bundled model, the real CLI and uvicorn) under hostile load from real
clients on 127.0.0.1 (``tests.play.live``'s attackers, in a process of their own): a player keeps its 60 fps and
the server's memory stays flat. Bounded in time (about 40 s with the server's start)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import warnings
from typing import Any

import pytest

from tests.play.live import attackers, count_states, new_session, next_message, play_process, rss_mib, ws_connect

pytestmark = pytest.mark.timeout(300)

TRUSTED = "http://trusted.example:9"
MIN_STATES_PER_S = 55          # 60 fps, less the noise of a shared 2-core machine


@pytest.fixture(scope="module")
def play_server():
    with play_process("--allow-origin", TRUSTED) as (process, port):
        yield process, port


@pytest.fixture(scope="module")
def baseline(play_server) -> float:
    """State messages per second a player gets with no other client: what this machine allows right now."""
    counts, _, _ = player_states(play_server[1], 3)
    print(f"baseline: player state messages per second with no other client: {counts}")
    return sum(counts) / len(counts)


def machine_can_keep_60_fps(baseline: float) -> bool:
    """Whether the fps of a player under attack measures the server: on a machine whose cores are busy with other
    jobs (a load average above its core count, or a lone session already under 55 fps) it would measure the
    machine instead, and is not checked."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if baseline >= MIN_STATES_PER_S and load <= cores:
        return True
    warnings.warn(f"busy machine (load average {load:.1f} on {cores} cores; a lone session gets {baseline:.1f} "
                  f"state messages/s): the fps under attack is not checked in this run")
    return False


def player_states(port: int, seconds: int, attack: tuple[str, ...] = (), during=None) -> tuple[list[int], Any, dict]:
    """State messages per second that a player of a session of its own receives while the ``attack`` (attackers of
    ``tests.play.live``, started once the player plays) goes on, the result of ``during()`` run meanwhile, and the
    attackers' results. The player sends its stick every frame, as the page does while a key is held."""
    async def play():
        async with ws_connect(port) as ws:
            await new_session(ws)
            with attackers(port, seconds + 1, *attack) if attack else contextlib.nullcontext({}) as results:

                async def send_inputs():
                    for i in range(seconds * 60):
                        stick = [1, 0] if (i // 60) % 2 else [-1, 0]
                        await ws.send(json.dumps({"type": "input", "port": 0, "state": {"stick": stick}}))
                        await asyncio.sleep(1 / 60)

                inputs = asyncio.create_task(send_inputs())
                extra = asyncio.create_task(during()) if during else None
                counts = await count_states(ws, seconds)
                inputs.cancel()
                extra = await extra if extra else None
            return counts, extra, results

    return asyncio.run(play())


def test_allow_origin_reaches_the_server(play_server):
    _, port = play_server

    async def hello(origin):
        async with ws_connect(port, origin=origin) as ws:
            return await next_message(ws, "hello")

    assert asyncio.run(hello(TRUSTED))["fps"] == 60


def test_a_player_keeps_60_fps_while_another_client_floods_steps(play_server, baseline):
    """Before, each 600-frame step ran on the event loop: 20 of them froze every session for 17 s."""
    _, port = play_server
    if not machine_can_keep_60_fps(baseline):
        pytest.skip("busy machine: the fps under attack would measure the other jobs on its cores (see warning)")
    counts, _, results = player_states(port, 5, ("flood_steps",))
    print(f"player state messages per second while flooded: {counts}; flood results {results}")
    assert results["0:flood_steps"] >= 1                     # the flood kept its queue of steps full
    assert sum(counts) / len(counts) >= MIN_STATES_PER_S, counts


def test_soak_a_player_keeps_60_fps_and_memory_stays_flat(play_server, baseline):
    """For 15 s, all at once beside one player: a step flooder, a client flooding over the message limit (closed
    each time, and reconnecting), a sender of malformed messages, a sender of
    oversized ones, a session churner, a client that never reads, and half-sent HTTP requests. Each session-making
    attacker comes from its own loopback address (the server caps sessions per address)."""
    process, port = play_server
    seconds = 15

    async def sample_memory():
        await asyncio.sleep(3)
        early = rss_mib(process.pid)
        await asyncio.sleep(seconds - 3.5)
        return early, rss_mib(process.pid)

    attack = ("flood_steps@127.0.0.2", "flood_over_limit", "send_bad_messages", "send_oversized",
              "churn_sessions@127.0.0.4", "never_read@127.0.0.5", "hold_partial_requests")
    counts, (early, late), results = player_states(port, seconds, attack, during=sample_memory)
    flood, kicked, (bad_sent, bad_answered), oversized, churned, _, cut = results.values()
    print(f"soak: player states/s {counts}; RSS {early:.1f} → {late:.1f} MiB; flood steps refused {flood}; "
          f"over-limit floods closed {kicked}; bad messages {bad_sent} sent, {bad_answered} answered; oversized "
          f"closes {oversized}; sessions churned {churned}; partial requests cut {cut}")
    if machine_can_keep_60_fps(baseline):
        # The soak asks for legitimate model work beside the player (a second 60 fps session, the never-reading
        # client's, and a full queue of steps) on the one model thread; ticks that queue up there run as one
        # batched step (tick_together), so that a 2-core machine keeps every session near 60 fps. The player's
        # fps is checked where this machine fits that work beside it; where even that does not reach 55/s, the
        # figures are printed instead (they would measure the CPU, not the server).
        beside, _, _ = player_states(port, 3, ("never_read@127.0.0.6", "flood_steps@127.0.0.7"))
        print(f"player state messages per second beside the soak's model work alone: {beside}")
        if sum(beside) / len(beside) >= MIN_STATES_PER_S:
            assert sum(counts) / len(counts) >= MIN_STATES_PER_S, (counts, beside)
            # No stall: every second at least half the frames (the attack's first seconds, when its sessions
            # start, measured 35-42).
            assert min(counts) >= 30, (counts, beside)
        else:
            warnings.warn(f"this machine gives a player {beside} state messages/s beside a second session and a "
                          f"step flood alone: the soak's 60 fps is not checked (the soak gave {counts})")
    assert bad_sent and bad_answered == bad_sent         # every bad message answered, none dropped
    assert oversized >= 1 and churned >= 1 and flood >= 1 and kicked >= 1 and cut >= 1
    assert late - early < 40, (early, late)              # flat: bounded queues, sessions and connections
    assert process.poll() is None
