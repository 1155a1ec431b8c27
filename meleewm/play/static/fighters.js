// Fighters drawn in code (no sprites): one silhouette per character, posed by the action's cue.
//
// Sizes are in Melee units. `shield` is the shield's diameter at full health and `shieldY` the height of its
// centre, as the SlippiLab replay viewer (github.com/frankborden/slippilab, src/viewer/characters/*.ts) gives them:
// shieldSize (model scale × the character's shield-size attribute) and shieldOffset × scale. `est` marks the
// characters whose shield centre is our estimate (SlippiLab's offset there is a placeholder); for Mr. Game & Watch,
// Kirby, Link, Mewtwo, Yoshi, Zelda, Young Link, Dr. Mario (Mario's value) and Pichu the shield size is estimated
// too. The body's height is twice the shield centre's height (the bubble sits on the torso), the width in
// proportion to the shield.
// `color` is the default costume's main colour, `trim` its second colour.
export const FIGHTERS = {
  0: { name: "Captain Falcon", shield: 14.55, shieldY: 10.13, color: "#3a4fb8", trim: "#d83a2e", build: "biped", features: ["helmet", "scarf"] },
  1: { name: "Donkey Kong", shield: 17.75, shieldY: 8.5, est: true, color: "#7b4a22", trim: "#d8262b", build: "brute", features: ["tie"] },
  2: { name: "Fox", shield: 13.8, shieldY: 8.64, color: "#c9833a", trim: "#e8e2d0", build: "biped", features: ["ears", "tail", "snout"] },
  3: { name: "Mr. Game & Watch", shield: 12.0, shieldY: 7.5, est: true, color: "#101010", trim: "#101010", build: "flat", features: ["nose"] },
  4: { name: "Kirby", shield: 11.0, shieldY: 4.2, est: true, color: "#f3a1c4", trim: "#d8263b", build: "ball", features: ["feet"] },
  5: { name: "Bowser", shield: 21.56, shieldY: 10.5, est: true, color: "#3d8c3a", trim: "#e8c23a", build: "brute", features: ["shell", "horns"] },
  6: { name: "Link", shield: 13.5, shieldY: 8.5, est: true, color: "#3c8c3c", trim: "#e0c890", build: "biped", features: ["pointhat", "sword", "shieldback"] },
  7: { name: "Luigi", shield: 13.44, shieldY: 7.5, est: true, color: "#2f9c3a", trim: "#2c4fb0", build: "biped", features: ["cap"] },
  8: { name: "Mario", shield: 11.83, shieldY: 6.5, est: true, color: "#d8262b", trim: "#2c4fb0", build: "biped", features: ["cap"] },
  9: { name: "Marth", shield: 13.51, shieldY: 8.35, color: "#2c3f8c", trim: "#e0e0f0", build: "biped", features: ["cape", "sword", "tiara"] },
  10: { name: "Mewtwo", shield: 15.0, shieldY: 9.5, est: true, color: "#c8b8d8", trim: "#8a4aa8", build: "biped", features: ["longtail", "ears"] },
  11: { name: "Ness", shield: 13.75, shieldY: 6.0, est: true, color: "#d83a2e", trim: "#2c4fb0", build: "biped", features: ["cap", "backpack"] },
  12: { name: "Peach", shield: 13.66, shieldY: 8.7, est: true, color: "#f07ab0", trim: "#f0d040", build: "gown", features: ["crown", "hair"] },
  13: { name: "Pikachu", shield: 10.8, shieldY: 4.5, est: true, color: "#f2d22e", trim: "#d8262b", build: "critter", features: ["ears", "zigtail"] },
  14: { name: "Ice Climbers", shield: 12.36, shieldY: 6.0, est: true, color: "#6a4ad0", trim: "#f08ab0", build: "biped", features: ["hood", "hammer"] },
  15: { name: "Jigglypuff", shield: 12.34, shieldY: 4.54, color: "#f4a6c8", trim: "#5ab0e0", build: "ball", features: ["ears", "curl"] },
  16: { name: "Samus", shield: 14.3, shieldY: 9.5, est: true, color: "#e07a1e", trim: "#d8262b", build: "biped", features: ["helmet", "cannon"] },
  17: { name: "Yoshi", shield: 14.0, shieldY: 8.0, est: true, color: "#4ab84a", trim: "#f0f0f0", build: "critter", features: ["snout", "saddle"] },
  18: { name: "Zelda", shield: 14.0, shieldY: 9.0, est: true, color: "#e8a0c0", trim: "#f0d040", build: "gown", features: ["tiara", "hair"] },
  19: { name: "Sheik", shield: 16.28, shieldY: 9.76, color: "#3a4a8c", trim: "#e8e8e8", build: "biped", features: ["wrap", "scarf"] },
  20: { name: "Falco", shield: 13.75, shieldY: 9.9, color: "#3a5ac8", trim: "#e8e2d0", build: "biped", features: ["beak", "crest", "tail"] },
  21: { name: "Young Link", shield: 11.5, shieldY: 6.5, est: true, color: "#4ab84a", trim: "#e0c890", build: "biped", features: ["pointhat", "sword"] },
  22: { name: "Dr. Mario", shield: 11.83, shieldY: 6.5, est: true, color: "#f0f0f0", trim: "#2c4fb0", build: "biped", features: ["mirror"] },
  23: { name: "Roy", shield: 12.69, shieldY: 7.84, est: true, color: "#c83a2e", trim: "#2c3f8c", build: "biped", features: ["cape", "sword"] },
  24: { name: "Pichu", shield: 9.0, shieldY: 3.5, est: true, color: "#f4e04a", trim: "#303030", build: "critter", features: ["ears"] },
  25: { name: "Ganondorf", shield: 16.2, shieldY: 11.28, est: true, color: "#4a3a50", trim: "#c8a040", build: "brute", features: ["cape", "hair"] },
};
const UNKNOWN = { name: "?", shield: 13, shieldY: 8, est: true, color: "#9aa4b5", trim: "#dde", build: "biped", features: [] };

export function fighterOf(character) { return FIGHTERS[character] || UNKNOWN; }

// Body proportions of each build, as fractions of the height (h) and of the shield diameter (w).
const BUILDS = {
  biped: { head: 0.17, torso: 0.38, legs: 0.36, width: 0.42 },
  brute: { head: 0.15, torso: 0.45, legs: 0.28, width: 0.62 },
  gown: { head: 0.16, torso: 0.30, legs: 0.42, width: 0.45 },
  critter: { head: 0.34, torso: 0.40, legs: 0.16, width: 0.55 },
  ball: { head: 0.0, torso: 1.0, legs: 0.0, width: 0.80 },
  flat: { head: 0.18, torso: 0.42, legs: 0.34, width: 0.30 },
};

// Draw one fighter with its feet at (0, 0) of the current transform, in Melee units, y up, facing +x (the caller
// mirrors for a left-facing fighter). `pose` is the server's cue; `ghost` draws an outline only.
export function drawFighter(ctx, f, pose, opts = {}) {
  const b = BUILDS[f.build] || BUILDS.biped;
  let h = f.shieldY * 2;
  const w = f.shield * b.width;
  const fill = opts.fill || f.color;
  const trim = opts.trim || f.trim;
  const ghost = !!opts.ghost;
  const outline = opts.outline || ctx.strokeStyle;
  if (pose === "crouch") h *= 0.62;
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
  const paint = (color) => {
    if (ghost) ctx.stroke();
    else { ctx.fillStyle = color; ctx.fill(); ctx.stroke(); }
  };
  if (f.build === "ball") {
    const r = h / 2;
    if (f.features.includes("feet")) {
      ctx.beginPath();
      ctx.ellipse(-r * 0.45, r * 0.12, r * 0.38, r * 0.18, 0, 0, Math.PI * 2);
      ctx.ellipse(r * 0.45, r * 0.12, r * 0.38, r * 0.18, 0, 0, Math.PI * 2);
      paint(trim);
    }
    ctx.beginPath();
    ctx.ellipse(0, r, r * (pose === "crouch" ? 1.25 : 1.05), r, 0, 0, Math.PI * 2);
    paint(fill);
    if (f.features.includes("ears")) {
      ctx.beginPath();
      for (const s of [-1, 1]) {
        ctx.moveTo(s * r * 0.25, r * 1.85); ctx.lineTo(s * r * 0.75, r * 2.25); ctx.lineTo(s * r * 0.8, r * 1.55);
      }
      paint(fill);
    }
    if (f.features.includes("curl")) {
      ctx.beginPath();
      ctx.arc(r * 0.05, r * 1.9, r * 0.22, 0, Math.PI * 1.5);
      if (!ghost) ctx.stroke();
    }
    eye(ctx, r * 0.45, r * 1.2, r * 0.22, ghost, trim);
    return { top: h, centre: r };
  }
  const legs = h * b.legs, torso = h * b.torso, headR = (h * b.head) / 2 + (f.build === "critter" ? h * 0.05 : 0);
  const hip = legs, shoulder = legs + torso;
  // behind the body: capes, tails
  if (f.features.includes("cape")) {
    ctx.beginPath();
    ctx.moveTo(-w * 0.15, shoulder); ctx.lineTo(-w * 0.75, legs * 0.15); ctx.lineTo(-w * 0.05, legs * 0.35); ctx.closePath();
    paint(f.build === "brute" ? "#2a1a2a" : trim);
  }
  if (f.features.includes("tail") || f.features.includes("longtail")) {
    const long = f.features.includes("longtail");
    ctx.beginPath();
    ctx.moveTo(-w * 0.2, hip + torso * 0.1);
    ctx.quadraticCurveTo(-w * (long ? 1.3 : 0.9), hip * (long ? 0.2 : 0.8), -w * (long ? 0.9 : 0.95), hip * (long ? 0.9 : 1.4));
    ctx.quadraticCurveTo(-w * 0.6, hip * 1.1, -w * 0.15, hip + torso * 0.25);
    paint(long ? trim : fill);
  }
  if (f.features.includes("zigtail")) {
    ctx.beginPath();
    ctx.moveTo(-w * 0.3, hip + torso * 0.2); ctx.lineTo(-w * 0.8, hip + torso * 0.5); ctx.lineTo(-w * 0.6, hip + torso * 0.75);
    ctx.lineTo(-w * 1.05, hip + torso * 1.1); ctx.lineTo(-w * 0.75, hip + torso * 0.5); ctx.lineTo(-w * 0.9, hip + torso * 0.35);
    ctx.closePath();
    paint(fill);
  }
  if (f.features.includes("shell")) {
    ctx.beginPath();
    ctx.ellipse(-w * 0.25, hip + torso * 0.55, w * 0.45, torso * 0.55, 0, 0, Math.PI * 2);
    paint(trim);
  }
  // legs (a gown for Peach and Zelda)
  if (f.build === "gown") {
    ctx.beginPath();
    ctx.moveTo(-w * 0.2, hip + torso * 0.2); ctx.lineTo(w * 0.2, hip + torso * 0.2);
    ctx.lineTo(w * 0.6, 0); ctx.lineTo(-w * 0.6, 0); ctx.closePath();
    paint(fill);
  } else if (legs > 0) {
    const stride = pose === "dodge" ? 0.1 : 0.22;
    ctx.beginPath();
    ctx.moveTo(-w * stride, 0); ctx.lineTo(-w * 0.12, hip);
    ctx.moveTo(w * stride, 0); ctx.lineTo(w * 0.12, hip);
    ctx.lineWidth *= 2.4;
    ctx.strokeStyle = ghost ? ctx.strokeStyle : (f.build === "flat" ? fill : trim);
    ctx.stroke();
    ctx.lineWidth /= 2.4;
    ctx.strokeStyle = outline;
  }
  // torso
  ctx.beginPath();
  const tw = f.build === "brute" ? w * 0.55 : w * 0.34;
  ctx.moveTo(-tw * 0.8, hip); ctx.lineTo(tw * 0.8, hip); ctx.lineTo(tw, shoulder); ctx.lineTo(-tw, shoulder); ctx.closePath();
  paint(fill);
  if (f.features.includes("tie")) {
    ctx.beginPath();
    ctx.moveTo(tw * 0.2, shoulder - torso * 0.1); ctx.lineTo(tw * 0.5, shoulder - torso * 0.5); ctx.lineTo(tw * 0.7, shoulder - torso * 0.1);
    paint(trim);
  }
  if (f.features.includes("scarf")) {
    ctx.beginPath();
    ctx.moveTo(-tw, shoulder); ctx.lineTo(tw, shoulder); ctx.lineTo(-tw * 1.8, shoulder - torso * 0.35); ctx.closePath();
    paint(trim);
  }
  if (f.features.includes("backpack") || f.features.includes("shieldback") || f.features.includes("saddle")) {
    ctx.beginPath();
    ctx.ellipse(-tw * 1.05, hip + torso * 0.55, tw * 0.45, torso * 0.35, 0, 0, Math.PI * 2);
    paint(trim);
  }
  // arm toward the facing side: a cannon for Samus; a sword or a hammer held forward
  const arm = { x: tw * 1.5, y: shoulder - torso * (pose === "attack" || pose === "special" ? 0.1 : 0.45) };
  ctx.beginPath();
  ctx.moveTo(tw * 0.6, shoulder - torso * 0.1); ctx.lineTo(arm.x, arm.y);
  ctx.lineWidth *= 2.2;
  ctx.strokeStyle = ghost ? ctx.strokeStyle : fill;
  ctx.stroke();
  ctx.lineWidth /= 2.2;
  ctx.strokeStyle = outline;
  if (f.features.includes("cannon")) {
    ctx.beginPath();
    ctx.ellipse(arm.x, arm.y, w * 0.28, w * 0.15, 0, 0, Math.PI * 2);
    paint(trim);
  }
  if (f.features.includes("sword")) {
    ctx.beginPath();
    ctx.moveTo(arm.x, arm.y);
    const up = pose === "attack" || pose === "special";
    ctx.lineTo(arm.x + (up ? w * 1.1 : w * 0.25), arm.y + (up ? h * 0.15 : -h * 0.45));
    ctx.lineWidth *= 1.6;
    ctx.strokeStyle = ghost ? ctx.strokeStyle : "#dfe8f5";
    ctx.stroke();
    ctx.lineWidth /= 1.6;
    ctx.strokeStyle = outline;
  }
  if (f.features.includes("hammer")) {
    ctx.beginPath();
    ctx.rect(arm.x, arm.y + h * 0.1, w * 0.3, w * 0.2);
    paint("#8a5a2a");
  }
  // head
  const hx = tw * 0.15, hy = shoulder + headR * 0.85;
  ctx.beginPath();
  if (f.build === "flat") ctx.ellipse(hx, hy, headR * 0.8, headR, 0, 0, Math.PI * 2);
  else ctx.arc(hx, hy, headR, 0, Math.PI * 2);
  paint(f.features.includes("helmet") ? trim : (f.features.includes("wrap") || f.features.includes("hood") ? fill : skin(f)));
  if (f.features.includes("hair")) {
    ctx.beginPath();
    ctx.moveTo(hx - headR, hy + headR * 0.3); ctx.lineTo(hx - headR * 1.6, hy - headR * 2.2); ctx.lineTo(hx + headR * 0.2, hy + headR);
    ctx.closePath();
    paint(f.build === "brute" ? "#b8402a" : "#f0c850");
  }
  if (f.features.includes("ears")) {
    ctx.beginPath();
    for (const s of [-0.6, 0.5]) {
      ctx.moveTo(hx + s * headR - headR * 0.3, hy + headR * 0.6);
      ctx.lineTo(hx + s * headR, hy + headR * (f.build === "critter" ? 2.6 : 1.9));
      ctx.lineTo(hx + s * headR + headR * 0.35, hy + headR * 0.6);
    }
    paint(fill);
  }
  if (f.features.includes("snout") || f.features.includes("beak")) {
    ctx.beginPath();
    const beak = f.features.includes("beak");
    ctx.moveTo(hx + headR * 0.6, hy + headR * 0.3);
    ctx.lineTo(hx + headR * (beak ? 2.0 : 1.6), hy - headR * 0.1);
    ctx.lineTo(hx + headR * 0.6, hy - headR * 0.5);
    ctx.closePath();
    paint(beak ? "#f0c030" : fill);
  }
  if (f.features.includes("crest")) {
    ctx.beginPath();
    ctx.moveTo(hx - headR * 0.2, hy + headR * 0.9); ctx.lineTo(hx - headR * 1.5, hy + headR * 1.6); ctx.lineTo(hx - headR * 0.9, hy + headR * 0.2);
    ctx.closePath();
    paint(fill);
  }
  if (f.features.includes("cap") || f.features.includes("pointhat") || f.features.includes("hood") || f.features.includes("mirror")) {
    ctx.beginPath();
    if (f.features.includes("pointhat")) {
      ctx.moveTo(hx + headR, hy + headR * 0.4); ctx.lineTo(hx - headR * 2.2, hy - headR * 0.2); ctx.lineTo(hx - headR, hy + headR * 0.5);
    } else {
      ctx.arc(hx, hy + headR * 0.15, headR * 1.02, 0, Math.PI);
      if (!f.features.includes("hood")) ctx.lineTo(hx + headR * 1.5, hy + headR * 0.15);
    }
    ctx.closePath();
    paint(f.features.includes("mirror") ? "#d8d8e0" : (f.features.includes("hood") ? fill : (f.features.includes("pointhat") ? fill : f.color)));
  }
  if (f.features.includes("crown") || f.features.includes("tiara") || f.features.includes("horns")) {
    ctx.beginPath();
    const y0 = hy + headR * 0.85;
    if (f.features.includes("horns")) {
      ctx.moveTo(hx - headR * 0.6, y0); ctx.lineTo(hx - headR * 1.1, y0 + headR); ctx.lineTo(hx - headR * 0.1, y0);
      ctx.moveTo(hx + headR * 0.3, y0); ctx.lineTo(hx + headR * 0.6, y0 + headR); ctx.lineTo(hx + headR * 0.8, y0);
    } else {
      ctx.moveTo(hx - headR * 0.6, y0); ctx.lineTo(hx - headR * 0.4, y0 + headR * 0.6); ctx.lineTo(hx, y0 + headR * 0.2);
      ctx.lineTo(hx + headR * 0.4, y0 + headR * 0.6); ctx.lineTo(hx + headR * 0.6, y0); ctx.closePath();
    }
    paint(f.features.includes("horns") ? "#f0e8c0" : "#f0d040");
  }
  if (f.features.includes("nose")) {
    ctx.beginPath();
    ctx.arc(hx + headR * 0.9, hy, headR * 0.3, 0, Math.PI * 2);
    paint(fill);
  }
  if (f.features.includes("helmet")) {
    ctx.beginPath();
    ctx.rect(hx + headR * 0.1, hy - headR * 0.1, headR * 0.85, headR * 0.45);
    paint("#f0c030");
  } else if (f.build !== "flat") {
    eye(ctx, hx + headR * 0.45, hy + headR * 0.15, headR * 0.22, ghost, "#101820");
  }
  return { top: hy + headR, centre: f.shieldY };
}

function eye(ctx, x, y, r, ghost, color) {
  if (ghost) return;
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fillStyle = "#fff";
  ctx.fill();
  ctx.beginPath();
  ctx.arc(x + r * 0.35, y, r * 0.55, 0, Math.PI * 2);
  ctx.fillStyle = color;
  ctx.fill();
}

function skin(f) {
  return f.build === "critter" || f.build === "flat" ? f.color : (f.features.includes("ears") ? f.color : "#f1c8a0");
}
