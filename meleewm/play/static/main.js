// The meleewm play page: one WebSocket to the server, the controls, the input loop and the renderer.
import { Renderer } from "./render.js";
import { Keyboard, LAYOUTS, NEUTRAL, connectedGamepads, gamepadState, keyName } from "./input.js";

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
};

const renderer = new Renderer($("screen"));
const keyboard = new Keyboard(window);
let drawQueued = false;

function send(msg) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(msg));
}

window.__meleewm_state = null;
window.__meleewm = { send, get session() { return S.session; }, errors: S.errors, get info() { return S.info; } };

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
    const state = cfg.kind === "gamepad" ? (gamepadState(cfg.pad) || NEUTRAL) : keyboard.state(cfg.layout);
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
    if (!replay) { status("the server offers no replays (start it with --replay or --data)", true); return null; }
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

function wire() {
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
  setInterval(() => { if (S.last && S.session && S.session.paused) renderer.draw(); }, 100);
}

wire();
renderer.draw();
connect();
