// The meleewm play page: one WebSocket to the server, the controls, the input loop and the renderer.
import { Renderer } from "./render.js";
import {
  Keyboard, LAYOUTS, NEUTRAL, PAD_TARGETS, changedSource, clearMapping, connectedGamepads, gamepadState, getPad,
  keyName, loadMapping, saveMapping, snapshot, sourceName,
} from "./input.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const S = {
  ws: null,
  info: null,
  me: null,
  session: null,
  last: null,
  errors: [],
  local: [{ kind: "keyboard", layout: "wasd" }, { kind: "keyboard", layout: "arrows" }],
  sent: [{ text: "", at: 0 }, { text: "", at: 0 }],
  received: [],
  padMapping: loadMapping(),
  binding: null,          // {target, rest} while the mapping screen waits for a pad input
  opened: null,           // the replay picked in the browser: its catalog entry
  preview: null,          // the real game at the timeline's frame, drawn instead of the session while picking
  library: { entries: [], total: 0 },
};

const renderer = new Renderer($("screen"));
const keyboard = new Keyboard(window);
let drawQueued = false;

function send(msg) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(msg));
}

window.__meleewm_state = null;
window.__meleewm = {
  send, errors: S.errors, renderer,
  get session() { return S.session; }, get info() { return S.info; }, get padMapping() { return S.padMapping; },
};

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  S.ws = ws;
  ws.onopen = () => status("connected");
  ws.onclose = () => { status("disconnected — reload the page to reconnect", true); S.session = null; };
  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    if (msg.type === "state") onState(msg);
    else if (msg.type === "session") onSession(msg);
    else if (msg.type === "hello") onHello(msg);
    else if (msg.type === "error") { S.errors.push(msg.message); status(msg.message, true); }
  };
}

// -- server messages ------------------------------------------------------------------------------------------

function onHello(msg) {
  S.info = msg;
  S.me = msg.client;
  renderer.setStages(msg.stages);
  fillStartForm(msg);
  fillHelp();
  if (msg.library) loadLibrary(0);
  const join = params.get("join");
  if (join) {
    const port = params.has("port") ? Number(params.get("port")) : 1;
    S.local[port] = { kind: "keyboard", layout: "wasd" };
    send({ type: "join", session: join, port: Number.isNaN(port) ? null : port });
  } else if (params.get("autostart") !== "0") {
    if (msg.default_start && msg.default_start.kind === "replay") $("ctrl-1").value = "replay";  // vs the recording
    newSession();
  }
}

function onSession(msg) {
  S.session = msg;
  if (!msg.paused && S.preview) { S.preview = null; $("timeline-box").hidden = true; }   // the game goes on
  $("session-id").textContent = msg.id;
  const invite = `${location.origin}/?join=${msg.id}&port=1`;
  $("invite").href = invite;
  $("invite").textContent = invite;
  $("download").href = msg.download;
  $("pause").textContent = msg.paused ? "Resume" : "Pause";
  $("step").disabled = !msg.paused;
  $("temperature").value = msg.temperature;
  $("temperature-value").textContent = Number(msg.temperature).toFixed(2);
  $("rules").checked = msg.rules;
  for (const p of [0, 1]) {
    const c = msg.controllers[p];
    const sel = $(`ctrl-${p}`);
    let value = c.kind;
    if (c.kind === "keyboard" || c.kind === "gamepad") {
      if (c.client === S.me) {
        if (S.local[p].kind !== c.kind) S.local[p] = c.kind === "keyboard" ? { kind: "keyboard", layout: "wasd" } : { kind: "gamepad", pad: 0 };
        value = S.local[p].kind === "keyboard" ? `keyboard:${S.local[p].layout}` : `gamepad:${S.local[p].pad}`;
      } else {
        value = "remote";
      }
    }
    sel.value = value;
    sel.querySelector('option[value="replay"]').disabled = !msg.replay_available;
  }
  const start = msg.start || {};
  $("start-summary").textContent = start.kind === "replay"
    ? `replay ${start.source} from frame ${start.frame} (warm-up ${start.warmup} frames)`
    : `${stageName(start.stage)}, ${charName(start.chars && start.chars[0])} vs ${charName(start.chars && start.chars[1])} (${start.mode})`;
  $("clients").textContent = msg.clients;
}

function onState(msg) {
  S.last = msg;
  window.__meleewm_state = msg;
  const now = performance.now();
  S.received.push(now);
  while (S.received.length && now - S.received[0] > 1000) S.received.shift();
  renderer.overlay.clientFps = S.received.length;
  if (S.preview) return;                   // the timeline's preview holds the canvas until the takeover
  renderer.state = msg;
  if (!drawQueued) {
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; renderer.draw(); });
  }
}

// -- input loop: this client's ports → input messages ---------------------------------------------------------

function inputTick() {
  const s = S.session;
  if (!s) return;
  const now = performance.now();
  for (const port of s.your_ports) {
    const cfg = S.local[port];
    const state = cfg.kind === "gamepad" ? (gamepadState(cfg.pad, S.padMapping) || NEUTRAL) : keyboard.state(cfg.layout);
    const text = JSON.stringify(state);
    const last = S.sent[port];
    if (text !== last.text || now - last.at > 250) {
      send({ type: "input", port, state });
      S.sent[port] = { text, at: now };
    }
  }
}
setInterval(inputTick, 1000 / 120);

// -- controls -------------------------------------------------------------------------------------------------

function startFromForm() {
  if ($("start-kind-replay").checked) {
    const replay = $("replay").value;
    if (!replay) { status("no replay picked: pick one in the Replays box, drop a .slp file, or start with --replays DIR", true); return null; }
    return { kind: "replay", replay, frame: Number($("frame").value) };
  }
  return {
    kind: "synthetic", stage: Number($("stage").value),
    chars: [Number($("char-0").value), Number($("char-1").value)], mode: $("mode").value,
  };
}

function controllerKind(p) {
  const v = $(`ctrl-${p}`).value;
  if (v.startsWith("keyboard:")) { S.local[p] = { kind: "keyboard", layout: v.split(":")[1] }; return "keyboard"; }
  if (v.startsWith("gamepad:")) { S.local[p] = { kind: "gamepad", pad: Number(v.split(":")[1]) }; return "gamepad"; }
  return v === "remote" ? "idle" : v;
}

function newSession() {
  const start = startFromForm();
  if (!start) return;
  const controllers = [0, 1].map((p) => ({ kind: controllerKind(p) }));
  send({ type: "new", start, controllers, temperature: Number($("temperature").value), rules: $("rules").checked });
}

function fillStartForm(info) {
  const stage = $("stage");
  stage.innerHTML = "";
  for (const id of info.legal_stages) stage.add(new Option(info.stages[String(id)].name, id));
  for (const p of [0, 1]) {
    const sel = $(`char-${p}`);
    sel.innerHTML = "";
    for (const c of info.characters) sel.add(new Option(c.name, c.id));
  }
  const replay = $("replay");
  replay.innerHTML = "";
  for (const r of info.replays) replay.add(new Option(`${r.label} [${r.first_frame}..${r.last_frame}]`, r.id));
  const d = info.default_start || {};
  const synth = d.kind === "synthetic" ? d : { stage: 31, chars: [20, 2], mode: "standing" };
  stage.value = synth.stage ?? 31;
  $("char-0").value = (synth.chars || [20, 2])[0];
  $("char-1").value = (synth.chars || [20, 2])[1];
  $("mode").value = synth.mode || "standing";
  if (d.kind === "replay") {
    $("start-kind-replay").checked = true;
    replay.value = d.replay;
    $("frame").value = d.frame;
  }
  $("temperature").value = info.temperature;
  $("temperature-value").textContent = Number(info.temperature).toFixed(2);
  $("rules").checked = info.rules;
}

function fillHelp() {
  const rows = [["control stick", (l) => [l.up, l.left, l.down, l.right].map(keyName).join(" ")],
    ["tilt (stick 50 %)", (l) => keyName(l.tilt)]];
  for (const b of ["A", "B", "X", "Y", "Z", "L", "R", "START"]) rows.push([b === "X" || b === "Y" ? `${b} (jump)` : (b === "Z" ? "Z (grab)" : (b === "L" || b === "R" ? `${b} (shield)` : b)), (l) => keyName(l.buttons[b])]);
  rows.push(["C-stick", (l) => (l.cstick ? [l.cstick.up, l.cstick.left, l.cstick.down, l.cstick.right].map(keyName).join(" ") : "—")]);
  const table = $("keymap");
  table.innerHTML = `<tr><th>GameCube</th><th>${LAYOUTS.wasd.label}</th><th>${LAYOUTS.arrows.label}</th></tr>`;
  for (const [name, f] of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${name}</td><td>${f(LAYOUTS.wasd)}</td><td>${f(LAYOUTS.arrows)}</td>`;
    table.appendChild(tr);
  }
}

function stageName(id) { return S.info && S.info.stages[String(id)] ? S.info.stages[String(id)].name : `stage ${id}`; }
function charName(id) {
  const c = S.info && S.info.characters.find((x) => x.id === id);
  return c ? c.name : `character ${id}`;
}

// A control the mouse just changed gives the focus back to the game canvas (keys go to the game anyway).
function refocus(event) {
  const el = event.target;
  if (el && (el.tagName === "SELECT" || el.type === "checkbox" || el.type === "range" || el.type === "radio")) {
    el.blur();
    $("screen").focus({ preventScroll: true });
  }
}

function wire() {
  document.addEventListener("change", refocus);
  $("pause").onclick = () => send({ type: S.session && S.session.paused ? "resume" : "pause" });
  $("step").onclick = () => send({ type: "step", frames: 1 });
  $("reset").onclick = () => send({ type: "reset" });
  $("swap").onclick = () => {
    // inputs sent after the swap message arrive after it: hold the swapped ports from now on
    S.local.reverse();
    if (S.session) S.session.your_ports = S.session.your_ports.map((p) => 1 - p);
    send({ type: "swap" });
  };
  $("new").onclick = () => newSession();
  $("apply-start").onclick = () => {
    const start = startFromForm();
    if (!start) return;
    if (S.session) send({ type: "start", start }); else newSession();
  };
  $("temperature").oninput = () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); };
  $("temperature").onchange = () => send({ type: "temperature", value: Number($("temperature").value) });
  $("rules").onchange = () => send({ type: "rules", on: $("rules").checked });
  for (const p of [0, 1]) {
    $(`ctrl-${p}`).onchange = () => {
      const kind = controllerKind(p);
      const current = S.session && S.session.controllers[p];
      if (!S.session) return;
      if (current && current.kind === kind && current.client === S.me) return;   // layout/pad changes stay local
      if (kind !== "keyboard" && kind !== "gamepad") {
        S.session.your_ports = S.session.your_ports.filter((q) => q !== p);    // stop sending inputs for it now
      }
      send({ type: "controller", port: p, kind });
    };
  }
  $("replay").onchange = () => {
    const r = S.info.replays.find((x) => x.id === $("replay").value);
    if (r && (Number($("frame").value) <= r.first_frame || Number($("frame").value) > r.last_frame)) {
      $("frame").value = Math.min(r.first_frame + 723, r.last_frame);
    }
  };
  window.addEventListener("gamepadconnected", () => status(`gamepads: ${connectedGamepads().map((g) => g.id).join(", ")}`));
  setInterval(() => { if ((S.last && S.session && S.session.paused) || S.preview) renderer.draw(); }, 100);
  wireReplays();
  wirePad();
}

// -- the replay browser: list, pick, scrub, take over; or drop a file ------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch { /* a body that is not JSON: the status says enough */ }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function replayMessage(text, isError = false) {
  const el = $("replay-message");
  el.textContent = text;
  el.className = isError ? "error" : "";
  if (isError) status(text, true);
}

async function loadLibrary(offset) {
  try {
    const page = await api(`/api/library?offset=${offset}&count=50`);
    S.library.entries = offset === 0 ? page.entries : S.library.entries.concat(page.entries);
    S.library.total = page.total;
    $("library-folder").textContent = `${page.folder}: ${page.total} replay(s)${page.truncated ? " (folder too large: only part of it was searched)" : ""}, newest first`;
    renderLibrary();
  } catch (error) {
    replayMessage(`could not list the replays: ${error.message}`, true);
  }
}

function renderLibrary() {
  const table = $("library");
  table.innerHTML = "<tr><th>date</th><th>stage</th><th>characters</th><th>length</th></tr>";
  for (const e of S.library.entries) {
    const tr = document.createElement("tr");
    tr.dataset.id = e.id;
    if (e.error) {
      tr.className = "bad";
      tr.innerHTML = `<td colspan="4"></td>`;
      tr.firstChild.textContent = `${e.name}: ${e.error}`;
    } else {
      tr.className = "pick";
      tr.title = e.name;
      const cells = [new Date(e.date).toLocaleString([], { dateStyle: "short", timeStyle: "short" }), e.stage_name,
        e.char_names.join(" vs "), e.duration_s === null ? "?" : clock(e.duration_s)];
      for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
      tr.onclick = () => openListed(e);
    }
    table.appendChild(tr);
  }
  $("library-more").hidden = S.library.entries.length >= S.library.total;
}

function clock(seconds) { return `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")}`; }

async function openListed(e) {
  replayMessage(`opening ${e.name}…`);
  try {
    opened(await api(`/api/library/${e.id}/open`, { method: "POST", headers: { "X-Meleewm": "1" } }));
  } catch (error) {
    replayMessage(error.message, true);
  }
}

async function uploadFile(file) {
  const limit = S.info ? S.info.max_upload_bytes : Infinity;
  if (!file.name.toLowerCase().endsWith(".slp")) { replayMessage(`${file.name} is not a .slp file`, true); return; }
  if (file.size > limit) {
    replayMessage(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB, over the ${(limit / 2 ** 20).toFixed(0)} MiB upload limit`, true);
    return;
  }
  replayMessage(`reading ${file.name}…`);
  try {
    opened(await api("/api/replays", {
      method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-Meleewm": "1", "X-Filename": encodeURIComponent(file.name) },
    }));
  } catch (error) {
    replayMessage(error.message, true);
  }
}

// A replay is open on the server: pause the game, show the timeline and the real game at its frame.
function opened(entry) {
  S.opened = entry;
  const replay = $("replay");
  if (![...replay.options].some((o) => o.value === entry.id)) replay.add(new Option(`${entry.label} [${entry.first_frame}..${entry.last_frame}]`, entry.id));
  if (S.session && !S.session.paused) send({ type: "pause" });
  const t = $("timeline");
  t.min = entry.first_frame + 1;
  t.max = entry.last_frame;
  t.value = Math.min(entry.first_frame + 724, entry.last_frame);   // 10 s after the game's start by default
  $("timeline-box").hidden = false;
  replayMessage(`${entry.label}: scrub to a moment, then take over`);
  previewFrame();
}

let previewTimer = null;
function previewFrame() {
  const frame = Number($("timeline").value);
  $("timeline-label").textContent = `frame ${frame} (${clock(Math.max(0, frame) / 60)} into the game)`;
  clearTimeout(previewTimer);
  previewTimer = setTimeout(async () => {
    if (!S.opened) return;
    try {
      const view = await api(`/api/replays/${S.opened.id}/frames/${frame}`);
      S.preview = { type: "state", preview: true, stage: S.opened.stage, frame: view.frame, timer: 480 - Math.max(0, view.frame) / 60,
        players: view.players, items: view.items, real: null };
      renderer.state = S.preview;
      renderer.draw();
    } catch (error) {
      replayMessage(error.message, true);
    }
  }, 60);
}

function takeOver() {
  if (!S.opened) return;
  const start = { kind: "replay", replay: S.opened.id, frame: Number($("timeline").value) };
  $("start-kind-replay").checked = true;
  $("replay").value = S.opened.id;
  $("frame").value = start.frame;
  S.preview = null;
  const port2 = S.session && S.session.controllers[1];
  const remote = port2 && (port2.kind === "keyboard" || port2.kind === "gamepad") && port2.client !== S.me;
  if (!remote) $("ctrl-1").value = "replay";
  if (!S.session) { newSession(); return; }
  send({ type: "start", start });
  if (!remote) send({ type: "controller", port: 1, kind: "replay" });
  send({ type: "resume" });
  replayMessage(`took over ${S.opened.label} at frame ${start.frame}: the outlines are the real game`);
}

function wireReplays() {
  $("library-more").onclick = () => loadLibrary(S.library.entries.length);
  $("timeline").oninput = previewFrame;
  $("takeover").onclick = takeOver;
  $("upload").onchange = () => { const f = $("upload").files[0]; if (f) uploadFile(f); $("upload").value = ""; };
  let depth = 0;
  window.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; document.body.classList.add("dragging"); });
  window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; document.body.classList.remove("dragging"); } });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    const files = e.dataTransfer ? [...e.dataTransfer.files] : [];
    if (files.length !== 1) { replayMessage("drop one .slp file", true); return; }
    uploadFile(files[0]);
  });
}

// -- gamepads: live state and the mapping screen -------------------------------------------------------------

function padIndex() { return Number($("pad-index").value); }

function renderPadMap() {
  const table = $("pad-map");
  table.innerHTML = "";
  for (const target of PAD_TARGETS) {
    const tr = document.createElement("tr");
    const waiting = S.binding && S.binding.target === target;
    tr.innerHTML = `<td>${target.replace("_", " ").toLowerCase()}</td><td class="${waiting ? "waiting" : ""}"></td><td><button>bind</button></td>`;
    tr.children[1].textContent = waiting ? "press a button or move a stick…" : sourceName(S.padMapping[target]);
    tr.dataset.target = target;
    tr.querySelector("button").onclick = () => startBinding(target);
    table.appendChild(tr);
  }
}

function startBinding(target) {
  const pad = getPad(padIndex());
  if (!pad) { status(`no gamepad ${padIndex() + 1}: press a button on it first`, true); return; }
  S.binding = { target, rest: snapshot(pad) };
  renderPadMap();
}

function padTick() {
  const pad = getPad(padIndex());
  if (S.binding && pad) {
    const src = changedSource(pad, S.binding.rest);
    if (src) {
      S.padMapping = { ...S.padMapping, [S.binding.target]: src };
      saveMapping(S.padMapping);
      S.binding = null;
      renderPadMap();
    }
  }
  const live = $("pad-live");
  if (!pad) { live.textContent = `no gamepad ${padIndex() + 1} seen yet: press a button on it`; return; }
  const st = gamepadState(padIndex(), S.padMapping);
  const pressed = pad.buttons.map((b, i) => (b.pressed || b.value > 0.5 ? i : null)).filter((i) => i !== null);
  live.textContent = `${pad.id}\naxes ${pad.axes.map((a) => a.toFixed(2)).join(" ")}\npressed ${pressed.join(" ") || "–"}\n`
    + `→ stick ${st.stick.join(", ")}  c ${st.cstick.join(", ")}  L ${st.l} R ${st.r}  ${st.buttons.join(" ")}`;
}

function wirePad() {
  renderPadMap();
  $("pad-reset").onclick = () => { clearMapping(); S.padMapping = loadMapping(); S.binding = null; renderPadMap(); };
  setInterval(padTick, 50);
}

wire();
renderer.draw();
connect();
