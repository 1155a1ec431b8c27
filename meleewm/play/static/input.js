// Keyboard and gamepad → controller state messages ({stick:[x,y], cstick:[x,y], l, r, buttons:[...]}).
// The server turns them into the model's controller encoding (meleewm/play/controllers.py documents the keymap).

// KeyboardEvent.code names: the physical keys, whatever the keyboard layout.
export const LAYOUTS = {
  wasd: {
    label: "Keyboard (WASD)",
    up: "KeyW", left: "KeyA", down: "KeyS", right: "KeyD", tilt: "ShiftLeft",
    buttons: { A: "KeyF", B: "KeyG", X: "KeyT", Y: "KeyY", Z: "KeyE", L: "KeyR", R: "KeyQ", START: "Digit1" },
    cstick: null,
  },
  arrows: {
    label: "Keyboard (arrows)",
    up: "ArrowUp", left: "ArrowLeft", down: "ArrowDown", right: "ArrowRight", tilt: "ShiftRight",
    buttons: { A: "KeyJ", B: "KeyK", X: "KeyL", Y: "KeyU", Z: "KeyO", L: "KeyI", R: "KeyP", START: "Digit0" },
    cstick: { up: "Numpad8", left: "Numpad4", down: "Numpad2", right: "Numpad6" },
  },
};

const KEY_NAMES = {
  ArrowUp: "↑", ArrowDown: "↓", ArrowLeft: "←", ArrowRight: "→", ShiftLeft: "Left Shift",
  ShiftRight: "Right Shift",
};

export function keyName(code) {
  if (KEY_NAMES[code]) return KEY_NAMES[code];
  return code.replace(/^Key/, "").replace(/^Digit/, "").replace(/^Numpad/, "Numpad ");
}

// Every key some layout uses: these always go to the game, never to a focused control.
export const MAPPED_KEYS = new Set(
  Object.values(LAYOUTS).flatMap((l) => [
    l.up, l.left, l.down, l.right, l.tilt, ...Object.values(l.buttons),
    ...(l.cstick ? Object.values(l.cstick) : []),
  ]),
);

// Fields where keys type text: the only place game keys are left alone.
const TEXT_INPUT_TYPES = new Set(["text", "number", "search", "email", "url", "password", "tel"]);
export function isTypingTarget(el) {
  if (!el) return false;
  if (el.isContentEditable || el.tagName === "TEXTAREA") return true;
  return el.tagName === "INPUT" && TEXT_INPUT_TYPES.has(el.type);
}

export class Keyboard {
  // Listens on the window in the capture phase, before any focused dropdown, slider or button sees the key: a
  // game key is taken for the game and its default action (changing a <select>, moving a slider, scrolling,
  // pressing a focused button) is cancelled. Only text fields keep their keys.
  constructor(target = window) {
    this.down = new Set();
    target.addEventListener("keydown", (e) => {
      if (isTypingTarget(e.target) || !MAPPED_KEYS.has(e.code)) return;
      e.preventDefault();
      this.down.add(e.code);
    }, { capture: true });
    target.addEventListener("keyup", (e) => {
      if (MAPPED_KEYS.has(e.code) && !isTypingTarget(e.target)) e.preventDefault();
      this.down.delete(e.code);
    }, { capture: true });
    window.addEventListener("blur", () => this.down.clear());
  }

  state(layoutName) {
    const l = LAYOUTS[layoutName] || LAYOUTS.wasd;
    const d = this.down;
    const axis = (neg, pos) => (d.has(pos) ? 1 : 0) - (d.has(neg) ? 1 : 0);
    let x = axis(l.left, l.right);
    let y = axis(l.down, l.up);
    if (x && y) { x *= Math.SQRT1_2; y *= Math.SQRT1_2; }   // diagonals on the unit circle
    if (d.has(l.tilt)) { x *= 0.5; y *= 0.5; }
    let cx = 0, cy = 0;
    if (l.cstick) { cx = axis(l.cstick.left, l.cstick.right); cy = axis(l.cstick.down, l.cstick.up); }
    const buttons = Object.entries(l.buttons).filter(([, code]) => d.has(code)).map(([name]) => name);
    return {
      stick: [round(x), round(y)], cstick: [cx, cy],
      l: buttons.includes("L") ? 1 : 0, r: buttons.includes("R") ? 1 : 0, buttons,
    };
  }
}

// -- gamepads -------------------------------------------------------------------------------------------------
// A mapping binds each GameCube control to a pad source: {button: i} (its value, 0..1) or {axis: i, sign: ±1}
// (the axis pushed that way, 0..1). The default is the "standard" layout (Xbox / PlayStation), buttons by
// position as Dolphin maps a GameCube pad; the page's mapping screen rebinds any control, saved in localStorage.
export const PAD_TARGETS = [
  "STICK_UP", "STICK_DOWN", "STICK_LEFT", "STICK_RIGHT", "CSTICK_UP", "CSTICK_DOWN", "CSTICK_LEFT", "CSTICK_RIGHT",
  "A", "B", "X", "Y", "Z", "L", "R", "START", "D_UP", "D_DOWN", "D_LEFT", "D_RIGHT",
];
export const STANDARD_MAPPING = {
  STICK_UP: { axis: 1, sign: -1 }, STICK_DOWN: { axis: 1, sign: 1 },
  STICK_LEFT: { axis: 0, sign: -1 }, STICK_RIGHT: { axis: 0, sign: 1 },
  CSTICK_UP: { axis: 3, sign: -1 }, CSTICK_DOWN: { axis: 3, sign: 1 },
  CSTICK_LEFT: { axis: 2, sign: -1 }, CSTICK_RIGHT: { axis: 2, sign: 1 },
  A: { button: 0 }, B: { button: 2 }, X: { button: 1 }, Y: { button: 3 }, Z: { button: 5 },
  L: { button: 6 }, R: { button: 7 }, START: { button: 9 },
  D_UP: { button: 12 }, D_DOWN: { button: 13 }, D_LEFT: { button: 14 }, D_RIGHT: { button: 15 },
};
const MAPPING_KEY = "meleewm.gamepad-mapping";
const DEAD_ZONE = 0.15;
const PRESSED = 0.5;
const FULL_PRESS = 0.9;

export function loadMapping(storage = window.localStorage) {
  try {
    const saved = JSON.parse(storage.getItem(MAPPING_KEY) || "null");
    if (saved && typeof saved === "object") return { ...STANDARD_MAPPING, ...saved };
  } catch { /* a broken saved mapping falls back to the standard one */ }
  return { ...STANDARD_MAPPING };
}

export function saveMapping(mapping, storage = window.localStorage) {
  storage.setItem(MAPPING_KEY, JSON.stringify(mapping));
}

export function clearMapping(storage = window.localStorage) { storage.removeItem(MAPPING_KEY); }

export function sourceName(src) {
  if (!src) return "—";
  if (src.button !== undefined) return `button ${src.button}`;
  return `axis ${src.axis} ${src.sign > 0 ? "+" : "−"}`;
}

export function getPad(index) {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  return (pads && pads[index]) || null;
}

function sourceValue(pad, src) {
  if (!src) return 0;
  if (src.button !== undefined) {
    const b = pad.buttons[src.button];
    return b ? Math.max(b.value || 0, b.pressed ? 1 : 0) : 0;
  }
  return Math.max(0, (pad.axes[src.axis] || 0) * src.sign);
}

function stick(x, y) {
  const m = Math.hypot(x, y);
  if (m < DEAD_ZONE) return [0, 0];
  if (m > 1) { x /= m; y /= m; }
  return [round(x), round(y)];
}

export function gamepadState(index, mapping = STANDARD_MAPPING) {
  const pad = getPad(index);
  if (!pad) return null;
  const v = (target) => sourceValue(pad, mapping[target]);
  const buttons = ["A", "B", "X", "Y", "Z", "START", "D_UP", "D_DOWN", "D_LEFT", "D_RIGHT"].filter((b) => v(b) > PRESSED);
  const l = v("L"), r = v("R");
  if (l > FULL_PRESS) buttons.push("L");
  if (r > FULL_PRESS) buttons.push("R");
  return {
    stick: stick(v("STICK_RIGHT") - v("STICK_LEFT"), v("STICK_UP") - v("STICK_DOWN")),
    cstick: stick(v("CSTICK_RIGHT") - v("CSTICK_LEFT"), v("CSTICK_UP") - v("CSTICK_DOWN")),
    l: round(l), r: round(r), buttons,
  };
}

// The pad input that differs most from a resting snapshot: the source a "press to bind" waits for.
export function snapshot(pad) {
  return { buttons: pad.buttons.map((b) => b.value || (b.pressed ? 1 : 0)), axes: [...pad.axes] };
}

export function changedSource(pad, rest) {
  for (let i = 0; i < pad.buttons.length; i++) {
    const value = pad.buttons[i].value || (pad.buttons[i].pressed ? 1 : 0);
    if (value > PRESSED && (rest.buttons[i] || 0) <= PRESSED) return { button: i };
  }
  for (let i = 0; i < pad.axes.length; i++) {
    const delta = (pad.axes[i] || 0) - (rest.axes[i] || 0);
    if (Math.abs(delta) > 0.6) return { axis: i, sign: delta > 0 ? 1 : -1 };
  }
  return null;
}

export function connectedGamepads() {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  return Array.from(pads || []).filter(Boolean).map((p) => ({ index: p.index, id: p.id }));
}

export const NEUTRAL = { stick: [0, 0], cstick: [0, 0], l: 0, r: 0, buttons: [] };

function round(v) { return Math.round(v * 10000) / 10000; }
