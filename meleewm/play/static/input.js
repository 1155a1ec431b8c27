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

// Every key some layout uses (the page keeps the browser from scrolling on them).
export const MAPPED_KEYS = new Set(
  Object.values(LAYOUTS).flatMap((l) => [
    l.up, l.left, l.down, l.right, l.tilt, ...Object.values(l.buttons),
    ...(l.cstick ? Object.values(l.cstick) : []),
  ]),
);

export class Keyboard {
  constructor(target = window) {
    this.down = new Set();
    target.addEventListener("keydown", (e) => {
      if (e.target && ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) && e.target.type !== "range") return;
      if (MAPPED_KEYS.has(e.code)) e.preventDefault();
      this.down.add(e.code);
    });
    target.addEventListener("keyup", (e) => { this.down.delete(e.code); });
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

// Standard-mapping gamepads (Xbox / PlayStation): buttons by position, as Dolphin maps a GameCube pad.
const PAD_BUTTONS = { 0: "A", 2: "B", 1: "X", 3: "Y", 4: "Z", 5: "Z", 9: "START", 12: "D_UP", 13: "D_DOWN",
  14: "D_LEFT", 15: "D_RIGHT" };
const DEAD_ZONE = 0.15;

function stick(ax, ay) {
  let x = ax || 0, y = -(ay || 0);                 // browser y grows downward; Melee's upward
  const m = Math.hypot(x, y);
  if (m < DEAD_ZONE) return [0, 0];
  if (m > 1) { x /= m; y /= m; }
  return [round(x), round(y)];
}

export function gamepadState(index) {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  const pad = pads && pads[index];
  if (!pad) return null;
  const pressed = (i) => !!(pad.buttons[i] && pad.buttons[i].pressed);
  const value = (i) => (pad.buttons[i] ? pad.buttons[i].value : 0);
  const buttons = new Set();
  for (const [i, name] of Object.entries(PAD_BUTTONS)) if (pressed(Number(i))) buttons.add(name);
  const l = value(6), r = value(7);
  if (l > 0.9) buttons.add("L");
  if (r > 0.9) buttons.add("R");
  return {
    stick: stick(pad.axes[0], pad.axes[1]), cstick: stick(pad.axes[2], pad.axes[3]),
    l: round(l), r: round(r), buttons: [...buttons],
  };
}

export function connectedGamepads() {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  return Array.from(pads || []).filter(Boolean).map((p) => ({ index: p.index, id: p.id }));
}

export const NEUTRAL = { stick: [0, 0], cstick: [0, 0], l: 0, r: 0, buttons: [] };

function round(v) { return Math.round(v * 10000) / 10000; }
