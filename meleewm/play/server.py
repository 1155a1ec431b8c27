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
* ``WS /ws`` — one WebSocket per client. JSON text messages, each an object with a ``type``.

Client → server (``port`` is 0 or 1: the lower or the higher port of the game):

=================================================  ===================================================================
``{"type": "new", "start": S, "controllers": [C, C], "temperature": t, "rules": b}``  create a session and join it
``{"type": "join", "session": id, "port": p}``     join a session; ``port`` 0/1 takes that port (keyboard), null watches
``{"type": "start", "start": S}``                  restart the session from another start state
``{"type": "input", "port": p, "state": K}``       this client's controller state for a port it holds
``{"type": "controller", "port": p, "kind": k}``   k: keyboard, gamepad (this client's), idle, random, approach, replay
``{"type": "pause"}`` / ``{"type": "resume"}``     pause or resume the 60 fps loop
``{"type": "step", "frames": n}``                  advance n frames (1..600) while paused
``{"type": "reset"}``                              start again from the same start state
``{"type": "swap"}``                               swap the two ports' controllers (and the clients holding them)
``{"type": "temperature", "value": t}``            0 = argmax; > 0 samples categorical heads at t
``{"type": "rules", "on": b}``                     game rules on/off (counted in every state message)
``{"type": "ping"}``                               answered by ``{"type": "pong"}``
=================================================  ===================================================================

S is ``{"kind": "synthetic", "stage": 31, "chars": [20, 2], "mode": "entry"|"standing"}`` or
``{"kind": "replay", "replay": ID, "frame": F}`` (ID from ``/api/info``'s replays). K is a controller state
(``ControllerState.from_message``). C is ``{"kind": k}``.

Server → client: ``hello`` (what ``/api/info`` returns, and this client's id), ``session`` (the session's
description and the ports this client holds; sent on every change), ``state`` (every tick: frame, timer, per
player x, y, action id and name, pose, percent, stocks, facing, shield, hitlag, hitstun, airborne, ...; items;
in a replay takeover ``real``: the real game's players and items at that frame and the divergence; fps, step and
tick latency in ms, rule counts; see ``Session.message``), ``error`` (``message``; the connection stays open)
and ``pong``.

A message that is not text, longer than :data:`MAX_MESSAGE_BYTES`, not JSON, not an object with a known ``type``
or with bad fields gets an ``error`` reply and is otherwise ignored; other clients never notice. Each session
runs as one asyncio task paced at 60 fps (a late tick is not made up by bursts); it stops when its last client
leaves. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import secrets
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from meleewm.melee.characters import EXTERNAL_NAMES
from meleewm.melee.stages import LEGAL_STAGES, stage_name
from meleewm.play.controllers import (
    BOT_KINDS,
    BrowserController,
    ControllerError,
    ControllerState,
    ReplayController,
    make_bot,
)
from meleewm.play.library import MAX_UPLOAD_BYTES, LibraryError, ReplayLibrary
from meleewm.play.session import (
    FPS,
    ReplayGame,
    Session,
    SessionError,
    stage_geometry_message,
    use_play_threads,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_MESSAGE_BYTES = 16 * 1024      # larger messages get an error reply
WS_MAX_SIZE = 1 << 20              # uvicorn closes the connection above this (no reply possible)
MAX_SESSIONS = 16
MAX_OPENED = 4                     # replays opened from the page (library or upload) kept in memory
MAX_STEP_FRAMES = 600
OUTBOX = 16                        # queued messages per client; the oldest state message gives way
BROWSER_KINDS = ("keyboard", "gamepad")
CONTROLLER_KINDS = BROWSER_KINDS + BOT_KINDS + ("replay",)
PLAYABLE = sorted(c for c in EXTERNAL_NAMES if c <= 25)


class ClientError(ValueError):
    """A client message that cannot be carried out; the client gets its text as an error."""


# -- replays the server offers ------------------------------------------------------------------------------------

class ReplayCatalog:
    """Replays a session can start from: ``--replay`` files or game ids, and (up to ``limit``) games of ``--data``."""

    def __init__(self, spec, replays=(), data: str | Path | None = None, limit: int = 200):
        self.spec, self.data = spec, data
        self._given: dict[str, ReplayGame] = {}                      # --replay games, kept open
        self._dataset_ids: set[str] = set()
        self._cache: collections.OrderedDict[str, ReplayGame] = collections.OrderedDict()  # a few dataset games
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


# -- clients and sessions -----------------------------------------------------------------------------------------

@dataclass(eq=False)
class Client:
    """One WebSocket. Messages go out through a short queue drained by :meth:`pump`; when a slow client lets it
    fill up, its oldest *state* message is dropped (a newer one supersedes it), never an error or session one."""

    ws: Any
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    runner: SessionRunner | None = None
    queue: collections.deque = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, message: dict | str) -> None:
        """Queue a message: a dict, or the JSON text of a state message."""
        if isinstance(message, str):
            kind, text = "state", message
        else:
            kind, text = message.get("type"), json.dumps(message, separators=(",", ":"))
        if len(self.queue) >= OUTBOX:
            states = [i for i, (k, _) in enumerate(self.queue) if k == "state"]
            del self.queue[states[0] if states else 0]
        self.queue.append((kind, text))
        self.ready.set()

    def error(self, message: str) -> None:
        self.send({"type": "error", "message": message})

    async def pump(self) -> None:
        while True:
            await self.ready.wait()
            while self.queue:
                _, text = self.queue.popleft()
                await self.ws.send_text(text)
            self.ready.clear()


class SessionRunner:
    """One session, its clients, and the asyncio task that ticks it at 60 fps."""

    def __init__(self, hub: Hub, session: Session):
        self.hub, self.session = hub, session
        self.id = secrets.token_hex(4)
        self.clients: set[Client] = set()
        self.paused = False
        self.task: asyncio.Task | None = None
        self._tick_times: collections.deque[float] = collections.deque(maxlen=2 * FPS)
        self.fps = 0.0

    # -- the loop -----------------------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / FPS
        next_time = loop.time()
        while self.clients:
            if not self.paused and self.session.started:
                try:
                    self.advance(1)
                except Exception as error:  # noqa: BLE001 - keep serving; tell the players and pause
                    self.paused = True
                    for client in list(self.clients):
                        client.error(f"the session stopped: {type(error).__name__}: {error}; paused")
                    self.broadcast_session()
            next_time += period
            delay = next_time - loop.time()
            if delay < -0.1:          # fell behind (a slow machine, a long export): drop frames, no burst
                next_time = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)

    def advance(self, frames: int) -> None:
        for _ in range(frames):
            self.session.tick()
            now = time.perf_counter()
            self._tick_times.append(now)
        times = self._tick_times
        if len(times) >= 2 and times[-1] > times[0]:
            recent = [t for t in times if times[-1] - t <= 1.0]
            self.fps = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9) if len(recent) > 1 else 0.0
        self.broadcast_state()

    def broadcast_state(self) -> None:
        if not self.session.started:
            return
        text = self.session.message_json(session=self.id, fps=round(self.fps, 1), paused=self.paused)
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

    # -- commands -----------------------------------------------------------------------------------------------

    def start(self, start: Any) -> None:
        if not isinstance(start, dict):
            raise ClientError("start must be an object")
        kind = start.get("kind")
        s = self.session
        if kind == "synthetic":
            stage = _int(start.get("stage", 31), "stage")
            chars = start.get("chars", [20, 2])
            if not isinstance(chars, list) or len(chars) != 2:
                raise ClientError("chars must be a list of two character ids")
            chars = [_int(c, "chars") for c in chars]
            mode = start.get("mode", "standing")
            s.start_synthetic(stage, chars, mode)
        elif kind == "replay":
            replay_id = start.get("replay")
            if not isinstance(replay_id, str):
                raise ClientError("a replay start needs a replay id")
            game = self.hub.replays.get(replay_id)
            frame = _int(start.get("frame", game.first_frame + 1), "frame")
            s.start_replay(game, frame)
        else:
            raise ClientError("start.kind must be 'synthetic' or 'replay'")
        self._rebind_replay_controllers()
        self.broadcast_session()
        self.broadcast_state()

    def _rebind_replay_controllers(self) -> None:
        s = self.session
        for p, c in enumerate(s.controllers):
            if isinstance(c, ReplayController):
                s.controllers[p] = s.replay_controller(p) if s.replay is not None else make_bot("idle")

    def set_controller(self, client: Client, port: Any, kind: Any) -> None:
        port = _port(port)
        if kind not in CONTROLLER_KINDS:
            raise ClientError(f"controller kind must be one of {', '.join(CONTROLLER_KINDS)}")
        s = self.session
        if kind in BROWSER_KINDS:
            controller = BrowserController(kind, client.id)
        elif kind == "replay":
            controller = s.replay_controller(port)
        else:
            controller = make_bot(kind, seed=port)
        s.set_controller(port, controller)
        self.broadcast_session()

    def swap(self) -> None:
        s = self.session
        s.controllers.reverse()
        self._rebind_replay_controllers()
        self.broadcast_session()


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ClientError(f"{name} must be an integer")
    return int(value)


def _port(value: Any) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise ClientError("port must be 0 or 1")
    return int(value)


class Hub:
    """What the app serves: the model, the replays, the sessions."""

    def __init__(self, model, *, replays: ReplayCatalog | None = None, library: ReplayLibrary | None = None,
                 default_start: dict | None = None, temperature: float = 0.0, rules: bool = True,
                 warmup: int | None = None):
        self.model = model
        self.replays = replays or ReplayCatalog(model.spec)
        self.library = library or ReplayLibrary(None)
        # Standing on the stage by default: the bundled model plays on from there far better than from the
        # entry animation, whose frames it saw only at game starts.
        self.default_start = default_start or {"kind": "synthetic", "stage": 31, "chars": [20, 2],
                                               "mode": "standing"}
        self.temperature, self.rules, self.warmup = float(temperature), bool(rules), warmup
        self.sessions: dict[str, SessionRunner] = {}

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
        }

    # -- message handling ----------------------------------------------------------------------------------------

    def handle(self, client: Client, data: dict) -> None:
        kind = data.get("type")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        if handler is None:
            raise ClientError(f"unknown message type {kind!r}")
        handler(client, data)

    def _runner(self, client: Client) -> SessionRunner:
        if client.runner is None:
            raise ClientError("join or create a session first")
        return client.runner

    def _on_ping(self, client: Client, data: dict) -> None:
        client.send({"type": "pong", "t": data.get("t")})

    def _on_new(self, client: Client, data: dict) -> None:
        if len(self.sessions) >= MAX_SESSIONS:
            raise ClientError(f"the server already runs {MAX_SESSIONS} sessions")
        temperature = data.get("temperature", self.temperature)
        session = Session(self.model, rules=bool(data.get("rules", self.rules)), warmup=self.warmup)
        session.set_temperature(_float(temperature, "temperature"))
        runner = SessionRunner(self, session)
        controllers = data.get("controllers", [{"kind": "keyboard"}, {"kind": "approach"}])
        if not isinstance(controllers, list) or len(controllers) != 2 or not all(isinstance(c, dict)
                                                                                  for c in controllers):
            raise ClientError("controllers must be a list of two objects")
        runner.start(data.get("start", self.default_start))
        for port, c in enumerate(controllers):
            runner.set_controller(client, port, c.get("kind"))
        self._leave(client)
        self.sessions[runner.id] = runner
        self._enter(client, runner)
        runner.broadcast_state()

    def _on_join(self, client: Client, data: dict) -> None:
        runner = self.sessions.get(data.get("session"))
        if runner is None:
            raise ClientError(f"no session {data.get('session')!r}")
        port = data.get("port", 1)
        if port is not None:
            held = runner.session.controllers[_port(port)]
            if isinstance(held, BrowserController) and held.client != client.id:
                raise ClientError(f"port {port} is held by another player; join another port or watch (port null)")
        if runner is not client.runner:
            self._leave(client)
            self._enter(client, runner)
        if port is not None:
            runner.set_controller(client, _port(port), data.get("kind", "keyboard"))
        runner.broadcast_session()
        runner.broadcast_state()

    def _on_start(self, client: Client, data: dict) -> None:
        self._runner(client).start(data.get("start"))

    def _on_input(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        port = _port(data.get("port"))
        controller = runner.session.controllers[port]
        if not isinstance(controller, BrowserController) or controller.client != client.id:
            raise ClientError(f"port {port} is not controlled by this client")
        controller.update(ControllerState.from_message(data.get("state")))

    def _on_controller(self, client: Client, data: dict) -> None:
        self._runner(client).set_controller(client, data.get("port"), data.get("kind"))

    def _on_pause(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        runner.paused = True
        runner.broadcast_session()
        runner.broadcast_state()

    def _on_resume(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        runner.paused = False
        runner.broadcast_session()

    def _on_step(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        frames = _int(data.get("frames", 1), "frames")
        if not 1 <= frames <= MAX_STEP_FRAMES:
            raise ClientError(f"frames must be in 1..{MAX_STEP_FRAMES}")
        if not runner.paused:
            raise ClientError("pause first, then step")
        runner.advance(frames)

    def _on_reset(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        runner.session.restart()
        runner._rebind_replay_controllers()
        runner.broadcast_session()
        runner.broadcast_state()

    def _on_swap(self, client: Client, data: dict) -> None:
        self._runner(client).swap()

    def _on_temperature(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        runner.session.set_temperature(_float(data.get("value"), "value"))
        runner.broadcast_session()

    def _on_rules(self, client: Client, data: dict) -> None:
        runner = self._runner(client)
        on = data.get("on")
        if not isinstance(on, bool):
            raise ClientError("on must be true or false")
        runner.session.rules = on
        runner.broadcast_session()

    # -- membership ----------------------------------------------------------------------------------------------

    def _enter(self, client: Client, runner: SessionRunner) -> None:
        client.runner = runner
        runner.clients.add(client)
        runner.ensure_running()
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
        if not runner.clients:
            self.sessions.pop(runner.id, None)
            if runner.task is not None:
                runner.task.cancel()
        else:
            runner.broadcast_session()


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClientError(f"{name} must be a number")
    return float(value)


# -- the app ------------------------------------------------------------------------------------------------------

def create_app(model, *, replays: ReplayCatalog | None = None, library: ReplayLibrary | None = None,
               default_start: dict | None = None, temperature: float = 0.0, rules: bool = True,
               warmup: int | None = None):
    """The FastAPI app serving ``model`` (a loaded WorldModel)."""
    hub = Hub(model, replays=replays, library=library, default_start=default_start, temperature=temperature,
              rules=rules, warmup=warmup)
    app = FastAPI(title="meleewm play", docs_url=None, redoc_url=None, openapi_url=None)
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
        snapshot = _snapshot(runner.session)
        try:
            data = await run_in_threadpool(snapshot.slp_bytes)
        except (SessionError, ValueError) as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        name = f"meleewm-{session_id}-{snapshot.frame}.slp"
        return Response(content=data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.websocket("/ws")
    async def websocket(ws: WebSocket):
        await ws.accept()
        client = Client(ws)
        pump = asyncio.get_running_loop().create_task(client.pump())
        client.send({"type": "hello", "client": client.id, **hub.info()})
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    client.error("binary messages are not accepted; send JSON text")
                    continue
                if len(text) > MAX_MESSAGE_BYTES:
                    client.error(f"message too large ({len(text)} characters; the limit is {MAX_MESSAGE_BYTES})")
                    continue
                try:
                    data = json.loads(text)
                except ValueError as error:
                    client.error(f"malformed JSON: {error}")
                    continue
                if not isinstance(data, dict):
                    client.error("a message must be a JSON object with a 'type'")
                    continue
                try:
                    hub.handle(client, data)
                except (ClientError, SessionError, ControllerError) as error:
                    client.error(str(error))
                except Exception as error:  # noqa: BLE001 - one bad message must not end the connection
                    client.error(f"could not handle {data.get('type')!r}: {type(error).__name__}: {error}")
        except WebSocketDisconnect:
            pass
        finally:
            hub._leave(client)
            pump.cancel()

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


def serve(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on a socket from :func:`listen` until interrupted."""
    import uvicorn

    use_play_threads()
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, ws_max_size=WS_MAX_SIZE))
    server.run(sockets=[sock])
