"""The web app of ``meleewm play``: a FastAPI app that serves one page and runs play sessions over WebSockets.

* ``GET /`` — the page (``static/index.html`` + ES modules in ``static/``, no build step).
* ``GET /api/info`` — stages (geometry of the six legal stages), characters, replays the server offers, defaults.
* ``GET /api/sessions/{id}/replay.slp`` — the session so far, as a Slippi replay (``Session.slp_bytes``).
* ``GET /api/library?offset=&count=`` — a page of the replay folder's listing (``meleewm.play.library``).
* ``POST /api/library/{file_id}/open`` — open a listed replay; answers its replay entry (id, label, frames).
* ``POST /api/replays`` — a dropped ``.slp`` (raw bytes, at most ``MAX_UPLOAD_BYTES``); answers its entry.
* ``GET /api/replays/{id}/frames/{frame}`` — the real game at one frame, as the page draws it (timeline preview).

The two POST routes need the header ``X-Meleewm: 1``, which only the page's scripts send. Opened and dropped
replays are kept (the last ``MAX_OPENED``) for replay starts; a bad file is a 400 with the reason.
* ``WS /ws`` — one WebSocket per client; the messages both ways are ``meleewm.play.protocol``'s.

Who may connect: :class:`OriginGuard` serves an HTTP request or a WebSocket handshake only when its ``Host`` names
this server (127.0.0.1, localhost, [::1] or the address it was reached on, with its port) and its ``Origin``, when
sent, is this server's own page or one given with ``meleewm play --allow-origin``; anything else gets 403. The
server binds to 127.0.0.1 unless told otherwise.

What one client can make the server do is bounded (:class:`Limits`): a message is parsed only when it is text, at
most ``MAX_MESSAGE_BYTES`` long and holds at most ``MAX_CONTAINERS`` objects and arrays, then validated by the
pydantic models of ``meleewm.play.protocol``; anything else gets an ``error`` reply and is otherwise ignored
(the connection stays open; other clients never notice). Each session runs as one asyncio task: a tick every
1/60 s while it runs (a late tick is not made up by bursts), and its clients' commands one at a time. Model work
(ticks, starts, steps, exports) runs on a few :class:`ModelThreads`, 60 fps ticks first, never on the event loop;
a step asks for at most ``MAX_STEP_FRAMES`` frames; a client has at most ``queued_commands`` commands waiting (more
get an error), and they are dropped when it disconnects. Replies are never dropped: the server stops reading from
a client while ``queued_replies`` replies wait for it. Sessions are capped in all and per client address, and a
session no client sent a message to for ``session_idle_s`` ends. An HTTP request must arrive in full within
``request_timeout_s``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from uvicorn.protocols.http.h11_impl import H11Protocol

from meleewm.errors import MeleewmError
from meleewm.melee.characters import EXTERNAL_NAMES, PLAYABLE_CHARACTERS
from meleewm.melee.game import FPS
from meleewm.melee.stages import LEGAL_STAGES, stage_name
from meleewm.play.controllers import (
    BrowserController,
    ControllerError,
    ControllerState,
    ReplayController,
    make_bot,
)
from meleewm.play.library import MAX_UPLOAD_BYTES, LibraryError, ReplayLibrary
from meleewm.play.protocol import (
    BROWSER_KINDS,
    CONTROLLER_KINDS,
    MAX_MESSAGE_BYTES,
    MAX_STEP_FRAMES,
    START,
    Input,
    Join,
    New,
    Pause,
    Ping,
    ProtocolError,
    ReplayStart,
    Rules,
    Reset,
    Restart,
    Resume,
    SetController,
    Step,
    Swap,
    SyntheticStart,
    Temperature,
    parse_message,
)
from meleewm.play.session import Session, stage_geometry_message, tick_together, use_play_threads
from meleewm.play.starts import ReplayGame, SessionError

STATIC = Path(__file__).resolve().parent / "static"
# uvicorn closes a connection whose message exceeds WS_MAX_SIZE (code 1009, no reply possible); between
# MAX_MESSAGE_BYTES and it, a message gets an error reply. WS_MAX_QUEUE messages wait unread per connection at most.
WS_MAX_SIZE = 64 * 1024
WS_MAX_QUEUE = 16
MAX_OPENED = 4                     # replays opened from the page (library or upload) kept in memory
PLAYABLE = list(PLAYABLE_CHARACTERS)


class ClientError(MeleewmError, ValueError):
    """A client message that cannot be carried out; the client gets its text as an error."""


# -- replays the server offers ------------------------------------------------------------------------------------

class ReplayCatalog:
    """Replays a session can start from: ``--replay`` files or game ids, and (up to ``limit``) games of ``--data``."""

    def __init__(self, spec, replays=(), data: str | Path | None = None, limit: int = 200):
        self.spec, self.data = spec, data
        self._given: dict[str, ReplayGame] = {}                      # --replay games, kept open
        self._dataset_ids: set[str] = set()
        self._cache: collections.OrderedDict[str, ReplayGame] = collections.OrderedDict()  # a few dataset games
        self._lock = threading.Lock()                               # sessions start on several model threads
        self.entries: list[dict] = []
        self._opened: collections.OrderedDict[str, ReplayGame] = collections.OrderedDict()  # from the page
        for source in replays or ():
            game = ReplayGame.open(source, spec, data=data)
            self._given[game.game_id] = game
            self.entries.append(_entry(game))
        self._dataset = None
        if data is not None:
            from meleewm.replay.dataset import Dataset

            self._dataset = Dataset(data)
            for row in self._dataset.games.to_pylist():
                if len(self.entries) >= limit:
                    break
                if row.get("n_players") != 2 or row["game_id"] in self._given:
                    continue
                chars = [p["character"] for p in sorted(row["players"], key=lambda p: p["port"])]
                self._dataset_ids.add(row["game_id"])
                self.entries.append({"id": row["game_id"], "label": _label(row["stage"], chars, row["game_id"]),
                                     "stage": row["stage"], "chars": chars, "first_frame": row["first_frame"],
                                     "last_frame": row["last_frame"]})

    def add(self, game: ReplayGame) -> dict:
        """A replay the page opened (from the library or dropped): kept among the last MAX_OPENED, not listed in
        ``entries``; its entry is returned."""
        self._opened[game.game_id] = game
        self._opened.move_to_end(game.game_id)
        while len(self._opened) > MAX_OPENED:
            self._opened.popitem(last=False)
        return _entry(game)

    def get(self, replay_id: str) -> ReplayGame:
        if replay_id in self._given:
            return self._given[replay_id]
        if replay_id in self._opened:
            return self._opened[replay_id]
        if replay_id not in self._dataset_ids:
            raise ClientError(f"unknown replay {replay_id!r}")
        with self._lock:
            if replay_id not in self._cache:
                self._cache[replay_id] = ReplayGame(self._dataset, replay_id, self.spec, source=replay_id[:12])
                while len(self._cache) > 4:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(replay_id)
            return self._cache[replay_id]


def _entry(game: ReplayGame) -> dict:
    return {"id": game.game_id, "label": _label(game.stage, game.chars, game.source), "stage": game.stage,
            "chars": list(game.chars), "first_frame": game.first_frame, "last_frame": game.last_frame}


def _label(stage: int, chars, source: str) -> str:
    names = " vs ".join(EXTERNAL_NAMES.get(int(c), str(c)) for c in chars)
    return f"{names} — {stage_name(stage)} ({source[:12]})"


# -- limits and model threads -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Every bound a client could otherwise push without end. ``create_app(limits=...)``; tests shrink them."""

    max_sessions: int = 16            # sessions on the server
    sessions_per_host: int = 4        # sessions created from one client address
    session_idle_s: float = 600.0     # a session no client of it sent a message to for this long ends
    max_clients: int = 64             # WebSocket connections
    queued_commands: int = 8          # one client's commands waiting for its session; more get an error reply
    queued_replies: int = 32          # replies waiting to go out to a client before the server reads on from it
    reply_wait_s: float = 10.0        # a client that leaves its replies unread this long is let go
    messages_per_s: int = 400         # more from one client in a second closes it (the page sends ≤ 240 inputs/s)
    request_timeout_s: float = 10.0   # an HTTP request must arrive in full within this (``serve``)
    # Threads running model work (ticks, starts, steps, exports). One: a batch-1 tick is mostly Python, so a second
    # thread mostly adds contention for the GIL, and with one a 60 fps tick waits for at most one other tick.
    model_threads: int = 1


REALTIME, COMMAND = 0, 1              # ModelThreads priorities: 60 fps ticks first, then commands and exports
COMMAND_SHARE = 0.25                  # of the model threads' time that commands may use, all clients together
REALTIME_STREAK = 4                   # ticks at most before a waiting command: commands progress under overload


class ModelThreads:
    """A few threads that run model work off the event loop, so that no message stalls the server.

    A running session's next tick goes before any command or export (but a waiting command goes after at most
    :data:`REALTIME_STREAK` rounds of ticks, so that commands progress on an overloaded machine), and each session
    has at most one piece of work waiting (its runner awaits each). The ticks waiting when a thread turns to them
    run as one round, through ``run_ticks`` (one batched model step for sessions that can share one): when the
    machine falls behind, the sessions' ticks queue up and batch, and a batch costs little more than one tick.
    Commands (steps, starts, exports) take turns, first come first served, and rest after each piece of work as
    long as it took (:data:`COMMAND_SHARE`):
    a tick is mostly Python, and back-to-back command work would hold the GIL and starve the event loop that
    carries every client's messages."""

    def __init__(self, threads: int, run_ticks: Callable[[list], list[tuple[Any, BaseException | None]]]):
        self._run_ticks = run_ticks
        self._ready = threading.Condition()
        self._realtime: collections.deque = collections.deque()
        self._commands: collections.deque = collections.deque()
        self._stopping = False
        self._threads = [threading.Thread(target=self._serve, name=f"meleewm-model-{i}", daemon=True)
                         for i in range(max(1, threads))]
        self._started = False
        self._command_turn: asyncio.Lock | None = None
        self._command_rest_until = 0.0

    async def tick(self, item: Any) -> Any:
        """``item``'s tick, in the next round of ticks: the result ``run_ticks`` gives it."""
        return await self._submit(item, REALTIME)

    async def run(self, work: Callable[[], Any]) -> Any:
        """A command's work (a step, a start, an export), within the commands' share."""
        if self._command_turn is None:
            self._command_turn = asyncio.Lock()
        async with self._command_turn:
            await asyncio.sleep(max(0.0, self._command_rest_until - time.monotonic()))
            spent = [0.0]

            def timed() -> Any:
                started = time.perf_counter()
                try:
                    return work()
                finally:
                    spent[0] = time.perf_counter() - started

            try:
                return await self._submit(timed, COMMAND)
            finally:
                self._command_rest_until = time.monotonic() + spent[0] * (1 - COMMAND_SHARE) / COMMAND_SHARE

    async def _submit(self, work: Any, priority: int) -> Any:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._ready:
            (self._realtime if priority == REALTIME else self._commands).append((work, future, loop))
            self._ready.notify()
        return await future

    def _serve(self) -> None:
        streak = 0          # ticks run in a row while a command waited: a command goes after REALTIME_STREAK
        while True:
            with self._ready:
                while not (self._realtime or self._commands or self._stopping):
                    self._ready.wait()
                if not (self._realtime or self._commands):
                    return
                if self._commands and (not self._realtime or streak >= REALTIME_STREAK):
                    work, future, loop = self._commands.popleft()
                    streak = 0
                    ticks = None
                else:
                    ticks = list(self._realtime)
                    self._realtime.clear()
                    streak += 1 if self._commands else 0
            if ticks is None:
                try:
                    result, error = work(), None
                except BaseException as caught:  # noqa: BLE001 - handed to the awaiting coroutine
                    result, error = None, caught
                loop.call_soon_threadsafe(_settle, future, result, error)
                continue
            try:
                outcomes = self._run_ticks([item for item, _, _ in ticks])
            except BaseException as caught:  # noqa: BLE001 - every tick of the round is told
                outcomes = [(None, caught)] * len(ticks)
            for (_, future, loop), (result, error) in zip(ticks, outcomes):
                loop.call_soon_threadsafe(_settle, future, result, error)

    def close(self) -> None:
        if self._started:
            with self._ready:
                self._stopping = True
                self._ready.notify_all()
            for thread in self._threads:
                thread.join(timeout=5)


def tick_runners(runners: list[SessionRunner]) -> list[tuple[str | None, BaseException | None]]:
    """One round of ticks (on a model thread): every runner's session advances a frame, in as few model steps as
    :func:`tick_together` can share; each runner gets its state message, or the error its tick raised."""
    errors = tick_together([runner.session for runner in runners])
    outcomes = []
    for runner, error in zip(runners, errors):
        if error is None:
            try:
                runner._count_tick()
                outcomes.append((runner._state_text(), None))
            except Exception as caught:  # noqa: BLE001 - that runner's players are told
                outcomes.append((None, caught))
        else:
            outcomes.append((None, error))
    return outcomes


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if not future.done():       # the awaiting task may have been cancelled meanwhile
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


# -- clients and sessions -----------------------------------------------------------------------------------------

SNAPSHOTS = ("state", "session")   # messages that supersede the one before of their kind
QUEUED_SNAPSHOTS = 8               # of each kind, per client; the oldest gives way


@dataclass(eq=False)
class Client:
    """One WebSocket. Messages go out through a queue drained by :meth:`pump`. A state or session message is a
    snapshot: when :data:`QUEUED_SNAPSHOTS` of its kind wait, the oldest of them gives way. Replies (errors, pongs)
    are never dropped: while ``reply_limit`` of them wait, the server reads no further message from this client
    (:meth:`wait_for_room`), so a client that sends faster than it reads only slows itself down."""

    ws: Any
    host: str = "?"
    reply_limit: int = 32
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    runner: SessionRunner | None = None
    closed: bool = False
    queued_commands: int = 0
    queue: collections.deque = field(default_factory=collections.deque)
    _replies: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _empty: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self):
        self._room.set()
        self._empty.set()

    def send(self, message: dict | str) -> None:
        """Queue a message: a dict, or the JSON text of a state message. Once the connection is gone, nothing."""
        if self.closed:         # the pump has stopped: a reply could never leave, and would close the reader's room
            return
        if isinstance(message, str):
            kind, text = "state", message
        else:
            kind, text = message.get("type"), json.dumps(message, separators=(",", ":"))
        if kind in SNAPSHOTS:
            same = [i for i, (k, _) in enumerate(self.queue) if k == kind]
            if len(same) >= QUEUED_SNAPSHOTS:
                del self.queue[same[0]]
        else:
            self._replies += 1
            if self._replies >= self.reply_limit:
                self._room.clear()
        self.queue.append((kind, text))
        self._ready.set()
        self._empty.clear()

    def error(self, message: str) -> None:
        self.send({"type": "error", "message": message})

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def drained(self) -> None:
        """Until every queued message has been handed to the connection."""
        await self._empty.wait()

    async def pump(self) -> None:
        try:
            while True:
                await self._ready.wait()
                while self.queue:
                    kind, text = self.queue.popleft()
                    if kind not in SNAPSHOTS:
                        self._replies -= 1
                        if self._replies < self.reply_limit:
                            self._room.set()
                    await self.ws.send_text(text)
                self._ready.clear()
                self._empty.set()
        finally:                  # the connection is gone: never leave the reader waiting for room
            self.closed = True
            self._room.set()
            self._empty.set()


@dataclass(eq=False)
class Job:
    """A command in a session's queue: ``work`` runs in the session's turn; an error goes to ``client``."""

    client: Client | None           # None: the server's own work (an export), awaited through ``result``
    name: str
    work: Callable[[], Awaitable[Any]]
    result: asyncio.Future | None = None


class SessionRunner:
    """One session, its clients, and the asyncio task that runs it: a tick every 1/60 s while it runs, and its
    clients' commands, one at a time, in order. The model work of both runs on the hub's :class:`ModelThreads`;
    the task only awaits it, so the event loop stays free for every other client. A late tick is not made up by
    a burst."""

    def __init__(self, hub: Hub, session: Session, host: str):
        self.hub, self.session, self.host = hub, session, host
        self.id = secrets.token_hex(4)
        self.clients: set[Client] = set()
        self.paused = False
        self.closed = False
        self.jobs: collections.deque[Job] = collections.deque()
        self.current: Job | None = None
        self.last_activity = time.monotonic()
        self._tick_times: collections.deque[float] = collections.deque(maxlen=2 * FPS)
        self.fps = 0.0
        self._wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return not self.paused and self.session.started

    # -- the queue ----------------------------------------------------------------------------------------------

    def submit(self, client: Client, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Queue a client's command; beyond ``Limits.queued_commands`` of its own it gets an error instead."""
        limit = self.hub.limits.queued_commands
        if client.queued_commands >= limit:
            raise ClientError(f"{name!r} refused: {limit} of your commands are still waiting; wait for them")
        client.queued_commands += 1
        self.jobs.append(Job(client, name, work))
        self._wake.set()

    async def call(self, name: str, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run the server's own ``work`` in the session's turn (nothing else touches the session meanwhile)."""
        job = Job(None, name, work, asyncio.get_running_loop().create_future())
        self.jobs.append(job)
        self._wake.set()
        return await job.result

    def drop_jobs_of(self, client: Client) -> None:
        dropped = [job for job in self.jobs if job.client is client]
        if dropped:
            self.jobs = collections.deque(job for job in self.jobs if job.client is not client)
            client.queued_commands -= len(dropped)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    # -- the task -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        idle_limit = self.hub.limits.session_idle_s
        next_tick = loop.time()
        while not self.closed:
            idle_left = idle_limit - (time.monotonic() - self.last_activity)
            if idle_left <= 0:
                self.hub.close(self, f"the session ended: no message from its players for {idle_limit:g} s")
                break
            if self.running and loop.time() >= next_tick:
                await self._tick()
                next_tick += 1.0 / FPS
                if loop.time() - next_tick > 0.1:     # fell behind (a busy machine): drop frames, no burst
                    next_tick = loop.time()
            elif self.jobs:
                await self._run_job(self.jobs.popleft())
            else:
                await self._sleep(min(next_tick - loop.time(), idle_left) if self.running else idle_left)
                if not self.running:
                    next_tick = loop.time()

    async def _sleep(self, timeout: float) -> None:
        """Until ``timeout`` s pass or a command arrives."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass

    async def _run_job(self, job: Job) -> None:
        self.current = job
        try:
            result = await job.work()
            if job.result is not None:
                job.result.set_result(result)
        except Exception as error:  # noqa: BLE001 - one bad command must not end the session
            if job.result is not None:
                job.result.set_exception(error)
            elif isinstance(error, (ClientError, SessionError, ControllerError)):
                job.client.error(str(error))
            else:
                job.client.error(f"could not handle {job.name!r}: {type(error).__name__}: {error}")
        finally:
            self.current = None
            if job.client is not None:
                job.client.queued_commands -= 1
            if not self.clients and not self.jobs and not self.closed:   # a "new" whose client left, or failed
                self.hub.close(self)

    async def _tick(self) -> None:
        try:
            text = await self.hub.threads.tick(self)
        except Exception as error:  # noqa: BLE001 - keep serving; tell the players and pause
            self.paused = True
            for client in list(self.clients):
                client.error(f"the session stopped: {type(error).__name__}: {error}; paused")
            self.broadcast_session()
            return
        for client in list(self.clients):
            client.send(text)

    def _advance(self) -> None:
        """One tick (on a model thread)."""
        self.session.tick()
        self._count_tick()

    def _count_tick(self) -> None:
        now = time.perf_counter()
        times = self._tick_times
        times.append(now)
        recent = [t for t in times if now - t <= 1.0]
        self.fps = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9) if len(recent) > 1 else 0.0

    def _state_text(self) -> str:
        return self.session.message_json(session=self.id, fps=round(self.fps, 1), paused=self.paused)

    # -- messages out -------------------------------------------------------------------------------------------

    def broadcast_state(self) -> None:
        if not self.session.started:
            return
        text = self._state_text()
        for client in list(self.clients):
            client.send(text)

    def broadcast_session(self) -> None:
        for client in list(self.clients):
            client.send(self.describe(client))

    def describe(self, client: Client | None = None) -> dict:
        ctrls = []
        for c in self.session.controllers:
            d = c.describe()
            if isinstance(c, BrowserController):
                d = {"kind": c.source, "client": c.client}
            ctrls.append(d)
        mine = [p for p, c in enumerate(self.session.controllers)
                if isinstance(c, BrowserController) and client is not None and c.client == client.id]
        return {"type": "session", "id": self.id, "you": client.id if client else None, "your_ports": mine,
                "controllers": ctrls, "paused": self.paused, "clients": len(self.clients),
                "start": self.session.start_info, "temperature": self.session.temperature,
                "rules": self.session.rules, "replay_available": self.session.replay is not None,
                "download": f"/api/sessions/{self.id}/replay.slp"}

    # -- commands (each runs as a job, in the session's turn) ---------------------------------------------------

    async def open(self, client: Client, start: SyntheticStart | ReplayStart, controllers) -> None:
        """A new session's first command: start it, set its controllers, move the client in."""
        await self.start(start, broadcast=False)
        for port, choice in enumerate(controllers):
            self.set_controller(client, port, choice.kind, broadcast=False)
        if not client.closed:
            self.hub.move(client, self)
        self.broadcast_session()
        self.broadcast_state()

    async def join(self, client: Client, port: int | None, kind: str) -> None:
        if port is not None:
            self._check_free(client, port)
        if not client.closed:
            self.hub.move(client, self)
        if port is not None:
            self.set_controller(client, port, kind, broadcast=False)
        self.broadcast_session()
        self.broadcast_state()

    def _check_free(self, client: Client, port: int) -> None:
        held = self.session.controllers[port]
        if isinstance(held, BrowserController) and held.client != client.id:
            raise ClientError(f"port {port} is held by another player; join another port or watch (port null)")

    async def start(self, start: SyntheticStart | ReplayStart, broadcast: bool = True) -> None:
        s = self.session
        if isinstance(start, SyntheticStart):
            await self.hub.threads.run(lambda: s.start_synthetic(start.stage, start.chars, start.mode))
        else:
            def start_replay() -> None:
                game = self.hub.replays.get(start.replay)
                s.start_replay(game, game.first_frame + 1 if start.frame is None else start.frame)

            await self.hub.threads.run(start_replay)
        self._rebind_replay_controllers()
        if broadcast:
            self.broadcast_session()
            self.broadcast_state()

    async def step(self, client: Client, frames: int) -> None:
        if not self.paused:
            raise ClientError("pause first, then step")
        for _ in range(frames):      # one tick per turn of the model threads: running sessions tick in between
            if client.closed or self.closed:
                return
            await self.hub.threads.run(self._advance)
        self.broadcast_state()

    async def reset(self) -> None:
        await self.hub.threads.run(self.session.restart)
        self._rebind_replay_controllers()
        self.broadcast_session()
        self.broadcast_state()

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.broadcast_session()
        if paused:
            self.broadcast_state()

    async def swap(self) -> None:
        self.session.controllers.reverse()
        self._rebind_replay_controllers()
        self.broadcast_session()

    async def set_temperature(self, value: float) -> None:
        self.session.set_temperature(value)
        self.broadcast_session()

    async def set_rules(self, on: bool) -> None:
        self.session.rules = on
        self.broadcast_session()

    def set_controller(self, client: Client, port: int, kind: str, broadcast: bool = True) -> None:
        s = self.session
        if kind in BROWSER_KINDS:
            controller = BrowserController(kind, client.id)
        elif kind == "replay":
            controller = s.replay_controller(port)
        else:
            controller = make_bot(kind, seed=port)
        s.set_controller(port, controller)
        if broadcast:
            self.broadcast_session()

    def _rebind_replay_controllers(self) -> None:
        s = self.session
        for p, c in enumerate(s.controllers):
            if isinstance(c, ReplayController):
                s.controllers[p] = s.replay_controller(p) if s.replay is not None else make_bot("idle")


class Hub:
    """What the app serves: the model, the replays, the sessions, the clients and their limits."""

    def __init__(self, model, *, replays: ReplayCatalog | None = None, library: ReplayLibrary | None = None,
                 default_start: dict | None = None, temperature: float = 0.0, rules: bool = True,
                 warmup: int | None = None, limits: Limits = Limits()):
        self.model = model
        self.replays = replays or ReplayCatalog(model.spec)
        self.library = library or ReplayLibrary(None)
        # Standing on the stage by default: the bundled model plays on from there far better than from the
        # entry animation, whose frames it saw only at game starts.
        self.default_start = default_start or {"kind": "synthetic", "stage": 31, "chars": [20, 2],
                                               "mode": "standing"}
        self._default_start = START.validate_python(self.default_start)
        self.temperature, self.rules, self.warmup = float(temperature), bool(rules), warmup
        self.limits = limits
        self.threads = ModelThreads(limits.model_threads, tick_runners)
        self.sessions: dict[str, SessionRunner] = {}
        self.clients: set[Client] = set()
        self._handlers: dict[type, Callable[[Client, Any], None]] = {
            New: self._on_new, Join: self._on_join, Restart: self._on_start, Input: self._on_input,
            SetController: self._on_controller, Pause: self._on_pause, Resume: self._on_resume, Step: self._on_step,
            Reset: self._on_reset, Swap: self._on_swap, Temperature: self._on_temperature, Rules: self._on_rules,
            Ping: self._on_ping,
        }

    def info(self) -> dict:
        return {
            "stages": stage_geometry_message(),
            "legal_stages": list(LEGAL_STAGES),
            "characters": [{"id": c, "name": EXTERNAL_NAMES[c]} for c in PLAYABLE],
            "replays": self.replays.entries,
            "library": None if self.library.folder is None else str(self.library.folder),
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "default_start": self.default_start,
            "controller_kinds": list(CONTROLLER_KINDS),
            "temperature": self.temperature,
            "rules": self.rules,
            "fps": FPS,
            "max_message_bytes": MAX_MESSAGE_BYTES,
            "max_step_frames": MAX_STEP_FRAMES,
            "max_messages_per_s": self.limits.messages_per_s,
        }

    # -- messages in ---------------------------------------------------------------------------------------------

    def receive(self, client: Client, text: str | None) -> None:
        """Act on one WebSocket message; anything wrong with it becomes an error reply to ``client``."""
        if text is None:
            client.error("binary messages are not accepted; send JSON text")
            return
        try:
            message = parse_message(text)
            if client.runner is not None:
                client.runner.touch()
            self._handlers[type(message)](client, message)
        except (ProtocolError, ClientError, SessionError, ControllerError) as error:
            client.error(str(error))
        except Exception as error:  # noqa: BLE001 - one bad message must not end the connection
            client.error(f"could not handle the message: {type(error).__name__}: {error}")

    def _runner(self, client: Client) -> SessionRunner:
        if client.runner is None:
            raise ClientError("join or create a session first")
        return client.runner

    def _on_ping(self, client: Client, message: Ping) -> None:
        client.send({"type": "pong", "t": message.t})

    def _on_new(self, client: Client, message: New) -> None:
        limits = self.limits
        if len(self.sessions) >= limits.max_sessions:
            raise ClientError(f"the server already runs {limits.max_sessions} sessions (the limit); sessions no "
                              f"one sends to end after {limits.session_idle_s:g} s")
        mine = sum(runner.host == client.host for runner in self.sessions.values())
        if mine >= limits.sessions_per_host:
            raise ClientError(f"your address already runs {mine} sessions (the limit); close one first")
        session = Session(self.model, rules=self.rules if message.rules is None else message.rules,
                          warmup=self.warmup)
        session.set_temperature(self.temperature if message.temperature is None else message.temperature)
        runner = SessionRunner(self, session, client.host)
        self.sessions[runner.id] = runner
        start = message.start or self._default_start
        runner.submit(client, "new", lambda: runner.open(client, start, message.controllers))

    def _on_join(self, client: Client, message: Join) -> None:
        runner = self.sessions.get(message.session)
        if runner is None:
            raise ClientError(f"no session {message.session!r}")
        if message.port is not None:
            runner._check_free(client, message.port)
        runner.submit(client, "join", lambda: runner.join(client, message.port, message.kind))

    def _on_start(self, client: Client, message: Restart) -> None:
        runner = self._runner(client)
        runner.submit(client, "start", lambda: runner.start(message.start))

    def _on_input(self, client: Client, message: Input) -> None:
        """Applied at once (not queued): the next tick reads it."""
        controller = self._runner(client).session.controllers[message.port]
        if not isinstance(controller, BrowserController) or controller.client != client.id:
            raise ClientError(f"port {message.port} is not controlled by this client")
        controller.update(ControllerState.from_message(message.state))

    def _on_controller(self, client: Client, message: SetController) -> None:
        runner = self._runner(client)

        async def work() -> None:
            runner.set_controller(client, message.port, message.kind)

        runner.submit(client, "controller", work)

    def _on_pause(self, client: Client, message: Pause) -> None:
        runner = self._runner(client)
        runner.submit(client, "pause", lambda: runner.set_paused(True))

    def _on_resume(self, client: Client, message: Resume) -> None:
        runner = self._runner(client)
        runner.submit(client, "resume", lambda: runner.set_paused(False))

    def _on_step(self, client: Client, message: Step) -> None:
        runner = self._runner(client)
        runner.submit(client, "step", lambda: runner.step(client, message.frames))

    def _on_reset(self, client: Client, message: Reset) -> None:
        runner = self._runner(client)
        runner.submit(client, "reset", runner.reset)

    def _on_swap(self, client: Client, message: Swap) -> None:
        runner = self._runner(client)
        runner.submit(client, "swap", runner.swap)

    def _on_temperature(self, client: Client, message: Temperature) -> None:
        runner = self._runner(client)
        runner.submit(client, "temperature", lambda: runner.set_temperature(message.value))

    def _on_rules(self, client: Client, message: Rules) -> None:
        runner = self._runner(client)
        runner.submit(client, "rules", lambda: runner.set_rules(message.on))

    # -- membership ----------------------------------------------------------------------------------------------

    def move(self, client: Client, runner: SessionRunner) -> None:
        if client.runner is runner:
            return
        self._leave(client)
        client.runner = runner
        runner.clients.add(client)
        runner.broadcast_session()

    def _leave(self, client: Client) -> None:
        runner = client.runner
        if runner is None:
            return
        client.runner = None
        runner.clients.discard(client)
        for p, c in enumerate(runner.session.controllers):
            if isinstance(c, BrowserController) and c.client == client.id:
                runner.session.set_controller(p, make_bot("idle"))
        if not runner.clients and runner.current is None:
            self.close(runner)
        else:
            runner.broadcast_session()

    def disconnect(self, client: Client) -> None:
        """A client has gone: its queued commands are dropped (a running step stops at its next frame)."""
        client.closed = True
        self.clients.discard(client)
        for runner in list(self.sessions.values()):
            runner.drop_jobs_of(client)
        self._leave(client)
        for runner in list(self.sessions.values()):
            if not runner.clients and not runner.jobs and runner.current is None:
                self.close(runner)

    def close(self, runner: SessionRunner, reason: str | None = None) -> None:
        """End a session: its task stops, its queued commands are dropped, its clients are told ``reason``."""
        runner.closed = True
        runner._wake.set()
        self.sessions.pop(runner.id, None)
        for job in runner.jobs:
            if job.client is not None:
                job.client.queued_commands -= 1
            if job.result is not None and not job.result.done():
                job.result.set_exception(ClientError("the session ended"))
        runner.jobs.clear()
        for client in list(runner.clients):
            client.runner = None
            if reason:
                client.error(reason)
        runner.clients.clear()


# -- who may connect ----------------------------------------------------------------------------------------------

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class OriginError(MeleewmError, ValueError):
    """An ``--allow-origin`` that is not an origin."""


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in ``Origin``; OriginError for anything else."""
    parts = urllib.parse.urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query \
            or parts.fragment or "@" in parts.netloc:
        raise OriginError(f"an origin is scheme://host[:port] (http or https), not {origin!r}")
    return f"{parts.scheme}://{parts.netloc}"


class OriginGuard:
    """ASGI middleware: HTTP requests and WebSocket handshakes are served only when their ``Host`` names this server
    and their ``Origin`` (when sent) is this server's own page, or an origin given with ``--allow-origin``.

    This server's names are 127.0.0.1, localhost and [::1], and the address the connection arrived on, each with
    the port it arrived on. A foreign ``Origin`` is another website driving the server through the player's browser
    (cross-site WebSocket hijacking); a foreign ``Host`` is a DNS-rebinding name pointed at this machine. Both get
    403. A request without ``Origin`` comes from a program, not from a web page, and is served."""

    def __init__(self, app, allow_origins=()):
        self.app = app
        self.extra_origins = frozenset(normalize_origin(o) for o in allow_origins)
        self.extra_hosts = frozenset(urllib.parse.urlsplit(o).netloc for o in self.extra_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                if scope["type"] == "websocket":      # a close before the accept: the handshake gets 403
                    await send({"type": "websocket.close", "code": 1008, "reason": refusal[:120]})
                else:
                    await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def own_hosts(self, scope) -> set[str]:
        server = scope.get("server")
        if not server or server[1] is None:
            return set()
        address, port = server
        names = set(LOOPBACK_NAMES) | {f"[{address}]" if ":" in address else address}
        hosts = {f"{name}:{port}" for name in names}
        if port == (443 if scope.get("scheme") in ("https", "wss") else 80):
            hosts |= names                            # the default port is not written
        return hosts

    def refusal(self, scope) -> str | None:
        """Why the request is refused, or None."""
        headers = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        own = self.own_hosts(scope)
        host = headers.get("host", "").strip().lower()
        if host not in own and host not in self.extra_hosts:
            return f"forbidden: Host {host!r} does not name this server"
        origin = headers.get("origin")
        if origin is None:
            return None
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        if origin.strip().lower() not in {f"{scheme}://{h}" for h in own} | self.extra_origins:
            return f"forbidden: Origin {origin!r} is not this server's page (meleewm play --allow-origin admits one)"
        return None


class RequestDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline: a request (headers and body) must arrive in full within ``timeout``
    seconds of the connection being ready for it (just opened, or done with the previous response), or the
    connection is closed. uvicorn alone waits for a partial request forever (a slow-loris client holds a connection
    per few bytes)."""

    timeout = Limits.request_timeout_s
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        upgraded = self.transport.get_protocol() is not self      # a WebSocket now
        if not upgraded and not self.transport.is_closing() and self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self.transport.close()


def request_deadline_protocol(timeout: float) -> type[RequestDeadlineH11]:
    return type("RequestDeadlineH11", (RequestDeadlineH11,), {"timeout": float(timeout)})


# -- the app ------------------------------------------------------------------------------------------------------

def create_app(model, *, replays: ReplayCatalog | None = None, library: ReplayLibrary | None = None,
               default_start: dict | None = None, temperature: float = 0.0, rules: bool = True,
               warmup: int | None = None, allow_origins=(), limits: Limits = Limits()):
    """The FastAPI app serving ``model`` (a loaded WorldModel), behind an :class:`OriginGuard` that admits this
    server's own page and ``allow_origins``."""
    allow_origins = tuple(normalize_origin(o) for o in allow_origins)    # a bad one fails here, not at a request
    hub = Hub(model, replays=replays, library=library, default_start=default_start, temperature=temperature,
              rules=rules, warmup=warmup, limits=limits)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        hub.threads.close()

    app = FastAPI(title="meleewm play", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.hub = hub
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info():
        return JSONResponse(hub.info())

    @app.get("/api/library")
    async def library_listing(offset: int = 0, count: int = 50):
        return JSONResponse(await run_in_threadpool(hub.library.listing, offset, count))

    @app.post("/api/library/{file_id}/open")
    async def library_open(file_id: str, request: Request):
        _check_page_request(request)
        try:
            path = hub.library.path(file_id)
            game = await run_in_threadpool(ReplayGame.open, path, model.spec)
        except (LibraryError, SessionError) as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        return JSONResponse(hub.replays.add(game))

    @app.post("/api/replays")
    async def upload(request: Request):
        """A dropped .slp file (the raw bytes; ``X-Filename`` names it in messages), at most MAX_UPLOAD_BYTES."""
        _check_page_request(request)
        name = Path(urllib.parse.unquote(request.headers.get("x-filename") or "dropped.slp")).name[:200]
        too_large = HTTPException(status_code=413, detail=f"{name} is larger than the upload limit of "
                                                          f"{MAX_UPLOAD_BYTES >> 20} MiB")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise too_large
            chunks.append(chunk)
        try:
            game = await run_in_threadpool(ReplayGame.from_bytes, b"".join(chunks), name, model.spec)
        except SessionError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        return JSONResponse(hub.replays.add(game))

    @app.get("/api/replays/{replay_id}/frames/{frame}")
    async def replay_frame(replay_id: str, frame: int):
        """The real game at one frame (players and items as the page draws them): the timeline's preview."""
        try:
            game = hub.replays.get(replay_id)
        except ClientError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        view = await run_in_threadpool(game.view_at, frame)
        if view is None:
            raise HTTPException(status_code=404, detail=f"frame {frame} is not in replay {game.source} "
                                                        f"(frames {game.first_frame}..{game.last_frame})")
        return JSONResponse(view)

    @app.get("/api/sessions/{session_id}/replay.slp")
    async def download(session_id: str):
        runner = hub.sessions.get(session_id)
        if runner is None or not runner.session.started:
            raise HTTPException(status_code=404, detail=f"no session {session_id}")
        async def take_snapshot() -> Session:
            return _snapshot(runner.session)

        try:
            snapshot = await runner.call("export", take_snapshot)
            data = await hub.threads.run(snapshot.slp_bytes)
        except ClientError:
            raise HTTPException(status_code=404, detail=f"no session {session_id}") from None
        except (SessionError, ValueError) as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        name = f"meleewm-{session_id}-{snapshot.frame}.slp"
        return Response(content=data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.websocket("/ws")
    async def websocket(ws: WebSocket):
        await ws.accept()
        if len(hub.clients) >= limits.max_clients:
            await ws.send_json({"type": "error", "message": f"the server has {limits.max_clients} clients (the "
                                                            f"limit); try again later"})
            await ws.close(code=1013)
            return
        client = Client(ws, host=ws.client.host if ws.client else "?", reply_limit=limits.queued_replies)
        hub.clients.add(client)
        pump = asyncio.get_running_loop().create_task(client.pump())
        client.send({"type": "hello", "client": client.id, **hub.info()})
        window_start, read, close_code = time.monotonic(), 0, 1000
        try:
            while True:
                try:
                    await asyncio.wait_for(client.wait_for_room(), limits.reply_wait_s)
                except TimeoutError:      # it reads none of its replies (and, unread, no disconnect reaches us)
                    client.error(f"closing: your replies went unread for {limits.reply_wait_s:g} s")
                    close_code = 1008
                    break
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                now = time.monotonic()
                if now - window_start >= 1.0:
                    window_start, read = now, 0
                read += 1
                if read > limits.messages_per_s:
                    # Closing (not reading slower) drops whatever the flood left unread in the socket at once;
                    # read slowly, a backlog would keep the server working for a client long gone.
                    client.error(f"closing: more than {limits.messages_per_s} messages in a second")
                    close_code = 1008
                    break
                hub.receive(client, message.get("text"))
        except WebSocketDisconnect:
            pass
        finally:
            hub.disconnect(client)
            with contextlib.suppress(Exception):     # the last replies (why it is closed), if it still reads
                await asyncio.wait_for(client.drained(), 1.0)
                await asyncio.wait_for(ws.close(code=close_code), 1.0)
            pump.cancel()

    app.add_middleware(OriginGuard, allow_origins=allow_origins)
    return app


def _check_page_request(request) -> None:
    """State-changing HTTP requests carry a header only the page's own scripts send: a cross-site form or a
    simple cross-origin request cannot set it without a preflight, which this server never grants."""
    if request.headers.get("x-meleewm") != "1":
        raise HTTPException(status_code=403, detail="send this request from the play page (X-Meleewm header)")


def _snapshot(session: Session) -> Session:
    """A copy of the session's export data, so the export can run in a thread while the game goes on."""
    snap = copy.copy(session)
    history = copy.copy(session._history)
    history.arrays = {k: v[:history.n].copy() for k, v in session._history.arrays.items()}
    history.capacity = history.n
    snap._history = history
    return snap


def listen(host: str = "127.0.0.1", port: int = 8000) -> tuple[socket.socket, str]:
    """A socket bound to (host, port) and the URL of the address it really listens on (port 0 picks a free one);
    an OSError (address in use, unknown host) before anything is served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    return sock, f"http://{shown}:{bound_port}/"


def server_config(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"):
    """The uvicorn configuration ``serve`` runs ``app`` with: message size and queue limits, the request deadline."""
    import uvicorn

    timeout = app.state.hub.limits.request_timeout_s
    # No per-message deflate: on a local connection it only costs a zlib pass per state message and per client.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, ws_max_size=WS_MAX_SIZE,
                          ws_max_queue=WS_MAX_QUEUE, ws_per_message_deflate=False,
                          http=request_deadline_protocol(timeout), timeout_keep_alive=max(1, min(5, int(timeout))))


def serve(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on a socket from :func:`listen` until interrupted."""
    import uvicorn

    use_play_threads()
    # The event loop wakes for every message and tick; while a model thread computes, each wake waits for the GIL
    # up to the switch interval (5 ms by default), which at hundreds of wakes a second starves the loop.
    sys.setswitchinterval(0.001)
    uvicorn.Server(server_config(app, log_level=log_level)).run(sockets=[sock])
