// Canvas renderer: a Melee-like camera, the stage, fighters drawn in code with their action cues, the real game's
// ghosts in a replay takeover with a divergence meter, items, KO and respawn effects, the HUD and an overlay.
import { drawFighter, fighterOf } from "./fighters.js";

const PORT_COLORS = { 1: "#e8424b", 2: "#3f7be8", 3: "#e8c63f", 4: "#41b85c" };
const HUD_HEIGHT = 90;
const CAMERA = {
  marginX: 35, marginTop: 45, marginBottom: 20,   // around the fighters, in Melee units
  minWidth: 130,                                   // the closest zoom
  smoothing: 0.18,                                 // share of the way to the target per drawn frame
};
const KO_MS = 900;
const RENDER_SAMPLES = 600;

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.stages = {};
    this.state = null;
    this.overlay = {};
    this.camera = null;            // {cx, cy, w} in Melee units; the height follows the canvas aspect
    this.effects = [];             // KO bursts: {x, y, color, until}
    this.lastPose = {};            // port → last pose (to spot a new KO)
    this.drawn = { fighters: 0, ghosts: 0, items: 0 };
    this.times = new Float64Array(RENDER_SAMPLES);
    this.timeCount = 0;
  }

  setStages(stages) { this.stages = stages || {}; }

  // p50/p99/max of the last RENDER_SAMPLES draws, in ms (performance.now() around draw()).
  renderStats() {
    const n = Math.min(this.timeCount, RENDER_SAMPLES);
    const a = Array.from(this.times.subarray(0, n)).sort((x, y) => x - y);
    const q = (p) => (n ? a[Math.min(n - 1, Math.floor(p * n))] : null);
    return { samples: n, p50: q(0.5), p99: q(0.99), max: n ? a[n - 1] : null };
  }

  draw() {
    const t0 = performance.now();
    this._draw();
    this.times[this.timeCount % RENDER_SAMPLES] = performance.now() - t0;
    this.timeCount++;
  }

  // -- camera -----------------------------------------------------------------------------------------------------

  // The box the camera wants: both fighters (and the real game's, in a takeover) with margins, no closer than
  // minWidth, at the canvas aspect, and inside the blast zones.
  targetCamera(st, g) {
    const [left, right, top, bottom] = g ? g.blast : [-250, 250, 200, -140];
    const aspect = this.canvas.width / (this.canvas.height - HUD_HEIGHT);
    const pts = [];
    const add = (p) => {
      if (p.x === null || p.y === null || p.pose === "dead") return;
      pts.push([Math.min(Math.max(p.x, left), right), Math.min(Math.max(p.y, bottom), top)]);
    };
    for (const p of st.players) add(p);
    if (st.real && st.real.players) for (const p of st.real.players) add(p);
    if (!pts.length) pts.push([0, 0]);
    let x0 = Math.min(...pts.map((p) => p[0])) - CAMERA.marginX, x1 = Math.max(...pts.map((p) => p[0])) + CAMERA.marginX;
    let y0 = Math.min(...pts.map((p) => p[1])) - CAMERA.marginBottom, y1 = Math.max(...pts.map((p) => p[1])) + CAMERA.marginTop;
    const w = Math.max(x1 - x0, (y1 - y0) * aspect, CAMERA.minWidth);
    return { ...this._bounded((x0 + x1) / 2, (y0 + y1) / 2, w, g, aspect), pts };
  }

  // A camera box inside the blast zones: no wider than they are, its centre moved in as far as needed.
  _bounded(cx, cy, w, g, aspect) {
    const [left, right, top, bottom] = g ? g.blast : [-250, 250, 200, -140];
    w = Math.min(w, right - left, (top - bottom) * aspect);
    const h = w / aspect;
    return {
      cx: Math.min(Math.max(cx, left + w / 2), right - w / 2),
      cy: Math.min(Math.max(cy, bottom + h / 2), top - h / 2),
      w,
    };
  }

  _view(st, g) {
    const W = this.canvas.width, H = this.canvas.height - HUD_HEIGHT;
    if (st) {
      const target = this.targetCamera(st, g);
      const c = this.camera;
      if (!c || this.cameraStage !== st.stage) this.camera = target;
      else {
        // eased toward the target, but never so slowly that a fighter leaves the picture
        const k = CAMERA.smoothing;
        const cx = c.cx + (target.cx - c.cx) * k, cy = c.cy + (target.cy - c.cy) * k;
        const aspect = W / H;
        let w = c.w + (target.w - c.w) * k;
        for (const [x, y] of target.pts) {
          w = Math.max(w, 2 * (Math.abs(x - cx) + CAMERA.marginX / 2), 2 * (Math.abs(y - cy) + CAMERA.marginBottom) * aspect);
        }
        this.camera = this._bounded(cx, cy, w, g, aspect);
      }
      this.cameraStage = st.stage;
    }
    const cam = this.camera || { cx: 0, cy: 40, w: 300 };
    const s = W / cam.w;
    const ox = W / 2 - cam.cx * s, oy = H / 2 + cam.cy * s;
    return { s, X: (x) => ox + x * s, Y: (y) => oy - y * s, W, H };
  }

  // Canvas pixel of a point in Melee units under the current camera (for tests and the overlay).
  project(x, y) {
    const v = this._view(null, null);
    return [v.X(x), v.Y(y)];
  }

  // -- the frame ----------------------------------------------------------------------------------------------------

  _draw() {
    const ctx = this.ctx, c = this.canvas;
    const st = this.state;
    this.drawnState = st;          // what the picture (and the camera) shows now
    const g = st ? this.stages[String(st.stage)] : null;
    const v = this._view(st, g);
    if (!this.background) {
      this.background = ctx.createLinearGradient(0, 0, 0, c.height);
      this.background.addColorStop(0, "#0d1b2a");
      this.background.addColorStop(1, "#1b263b");
    }
    ctx.fillStyle = this.background;
    ctx.fillRect(0, 0, c.width, c.height);
    this.drawn = { fighters: 0, ghosts: 0, items: 0 };
    if (g) this._stage(g, v);
    if (st) {
      const now = performance.now();
      if (st.real && st.real.players) st.real.players.forEach((p) => this._ghost(p, st.players, v));
      for (const it of st.items || []) this._item(it, v, false);
      if (st.real && st.real.items) for (const it of st.real.items) this._item(it, v, true);
      for (const p of st.players) {
        this._koCheck(p, g, now);
        this._fighter(p, v, now);
      }
      this._effects(v, now);
      this._hud(st);
      if (st.real) this._meter(st.real, st.players);
      if (st.preview) this._banner(`preview of the real game — frame ${st.frame}`);
    } else {
      ctx.fillStyle = "#cfd8e3";
      ctx.font = "20px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("connecting…", c.width / 2, c.height / 2);
    }
    this._overlay(st);
  }

  _stage(g, v) {
    const ctx = this.ctx;
    ctx.save();
    ctx.setLineDash([8, 6]);
    ctx.strokeStyle = "rgba(255, 90, 90, 0.7)";
    ctx.lineWidth = 2;
    ctx.strokeRect(v.X(g.blast[0]), v.Y(g.blast[2]), (g.blast[1] - g.blast[0]) * v.s, (g.blast[2] - g.blast[3]) * v.s);
    ctx.restore();
    const L = g.ledge_x, y0 = g.main_y || 0;
    ctx.beginPath();
    ctx.moveTo(v.X(-L), v.Y(y0));
    ctx.lineTo(v.X(L), v.Y(y0));
    ctx.lineTo(v.X(L * 0.82), v.Y(y0 - 14));
    ctx.lineTo(v.X(L * 0.35), v.Y(y0 - 40));
    ctx.lineTo(v.X(-L * 0.35), v.Y(y0 - 40));
    ctx.lineTo(v.X(-L * 0.82), v.Y(y0 - 14));
    ctx.closePath();
    ctx.fillStyle = "#4a5568";
    ctx.fill();
    ctx.strokeStyle = "#cbd5e0";
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.moveTo(v.X(-L), v.Y(y0));
    ctx.lineTo(v.X(L), v.Y(y0));
    ctx.stroke();
    ctx.fillStyle = "#f6e05e";
    for (const x of [-L, L]) ctx.fillRect(v.X(x) - 3, v.Y(y0) - 3, 6, 6);
    ctx.strokeStyle = "#e2e8f0";
    ctx.lineWidth = 4;
    for (const [y, x0, x1] of g.platforms) {
      ctx.beginPath();
      ctx.moveTo(v.X(x0), v.Y(y));
      ctx.lineTo(v.X(x1), v.Y(y));
      ctx.stroke();
    }
    ctx.fillStyle = "rgba(226, 232, 240, 0.5)";
    ctx.font = "12px sans-serif";
    ctx.textAlign = "left";
    ctx.fillText(g.name, 8, v.H - 8);
  }

  // -- fighters -----------------------------------------------------------------------------------------------------

  _fighter(p, v, now) {
    if (p.x === null || p.y === null) return;   // a non-finite prediction: nothing to draw
    if (p.pose === "dead") return;               // the KO burst shows it
    const ctx = this.ctx;
    const f = fighterOf(p.character);
    const color = PORT_COLORS[p.port] || "#aaa";
    let px = v.X(p.x), py = v.Y(p.y);
    const inView = px >= 0 && px <= v.W && py >= 0 && py <= v.H;
    if (!inView) { this._offscreen(p, f, color, v); return; }
    if (p.in_hitlag) { px += Math.sin(now / 16) * 2; }          // hitlag: the fighter shakes
    ctx.save();
    ctx.translate(px, py);
    ctx.scale(v.s, v.s);
    if (p.pose === "respawn") this._halo(f, color);
    const facing = p.facing >= 0 ? 1 : -1;
    ctx.save();
    ctx.scale(facing, -1);                        // Melee y is up; mirror for the facing
    this._posed(p, f, facing, now);
    const flash = p.in_hitlag || (p.invulnerable && Math.floor(now / 70) % 2 === 0);
    ctx.lineWidth = (p.hitstun ? 2.6 : 1.4) / v.s;
    ctx.strokeStyle = p.hitstun ? "#ffd23f" : (p.invulnerable ? "#ffffff" : "#0b0f18");
    ctx.globalAlpha = p.pose === "dodge" ? 0.55 : 1;
    drawFighter(ctx, f, p.pose, {
      fill: flash ? "#ffffff" : undefined, outline: ctx.strokeStyle,
    });
    ctx.globalAlpha = 1;
    if (p.pose === "attack") this._swing(f, p);
    if (p.pose === "special") this._aura(f, color, now);
    ctx.restore();
    if (p.shielding) this._shield(p, f, color);
    // port ring under the feet, as Melee marks ports
    ctx.beginPath();
    ctx.ellipse(0, 0, f.shield * 0.45, 1.6, 0, 0, Math.PI * 2);
    ctx.lineWidth = 1.2 / v.s * 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    ctx.restore();
    this.drawn.fighters++;
    // labels: port and action
    ctx.fillStyle = color;
    ctx.font = "bold 12px sans-serif";
    ctx.textAlign = "center";
    const top = py - f.shieldY * 2.3 * v.s;
    ctx.fillText(`P${p.port}`, px, top - 16);
    ctx.fillStyle = "#e2e8f0";
    ctx.font = "11px monospace";
    ctx.fillText(p.action_name + (p.in_hitlag ? " [hitlag]" : ""), px, top - 4);
  }

  // Pose transforms in fighter space (feet at 0, y up, facing +x).
  _posed(p, f, facing, now) {
    const ctx = this.ctx;
    const h = f.shieldY * 2;
    switch (p.pose) {
      case "tumble":                                 // spinning while launched
        ctx.translate(0, h / 2);
        ctx.rotate((now / 90) % (Math.PI * 2));
        ctx.translate(0, -h / 2);
        break;
      case "lying":                                  // flat on the ground, head behind
        ctx.translate(0, f.shield * 0.2);
        ctx.rotate(Math.PI / 2);
        break;
      case "ledge":                                  // hanging below the ledge
        ctx.translate(0, -h * 0.6);
        ctx.rotate(0.15);
        break;
      case "hurt":
        ctx.rotate(0.25);
        break;
      default:
        break;
    }
  }

  _shield(p, f, color) {
    // SlippiLab's rule: the shield's radius is half its full size times the shield health share (60 = full).
    const ctx = this.ctx;
    const health = Math.max(0, Math.min(60, p.shield || 0)) / 60;
    const r = Math.max(0.8, (f.shield * health) / 2);
    ctx.beginPath();
    ctx.arc(0, -f.shieldY, r, 0, Math.PI * 2);
    ctx.fillStyle = hexAlpha(color, 0.35 + 0.3 * (1 - health));
    ctx.fill();
    ctx.lineWidth = 0.4;
    ctx.strokeStyle = hexAlpha("#ffffff", 0.7);
    ctx.stroke();
  }

  // An attack: the arc its hitboxes sweep, toward the attack's direction (the state names the attack, not its
  // hitbox frames, so the arc is shown through the whole attack action, brightest at its start).
  _swing(f, p) {
    const ctx = this.ctx;
    const h = f.shieldY * 2;
    const reach = f.shield * 0.75 + (f.features.includes("sword") ? f.shield * 0.45 : 0);
    const dir = p.attack_direction || "forward";
    const angles = { forward: [-0.9, 0.9], up: [0.5, 2.6], down: [-2.6, -0.5], back: [2.2, 4.1], around: [0, Math.PI * 2] }[dir];
    const age = Math.max(0, p.action_frame || 0);
    const alpha = Math.max(0.25, 0.85 - age / 40);
    ctx.beginPath();
    ctx.arc(0, h / 2, reach, angles[0], angles[1]);
    ctx.lineWidth = Math.max(1.5, reach * 0.18);
    ctx.strokeStyle = `rgba(255, 240, 140, ${alpha.toFixed(2)})`;
    ctx.stroke();
  }

  _aura(f, color, now) {
    const ctx = this.ctx;
    const h = f.shieldY * 2;
    ctx.beginPath();
    ctx.arc(0, h / 2, f.shield * (0.55 + 0.08 * Math.sin(now / 60)), 0, Math.PI * 2);
    ctx.lineWidth = 0.8;
    ctx.strokeStyle = hexAlpha(color, 0.8);
    ctx.setLineDash([2, 1.5]);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  _halo(f, color) {
    // respawn: the angel platform under the feet and a halo above the head (we are in y-down pixel-scaled units)
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.ellipse(0, 1, f.shield * 0.8, 2.2, 0, 0, Math.PI * 2);
    ctx.fillStyle = "rgba(230, 240, 255, 0.75)";
    ctx.fill();
    ctx.beginPath();
    ctx.ellipse(0, -f.shieldY * 2.35, f.shield * 0.3, 1.2, 0, 0, Math.PI * 2);
    ctx.lineWidth = 0.8;
    ctx.strokeStyle = "#fff3a0";
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(0, -f.shieldY, f.shield * 0.9, 0, Math.PI * 2);
    ctx.strokeStyle = hexAlpha(color, 0.6);
    ctx.stroke();
  }

  // A fighter outside the camera (beyond the blast-zone-bounded view): a bubble at the edge, as Melee shows one.
  _offscreen(p, f, color, v) {
    const ctx = this.ctx;
    const r = 20;
    const bx = Math.min(Math.max(v.X(p.x), r + 4), v.W - r - 4);
    const by = Math.min(Math.max(v.Y(p.y), r + 4), v.H - r - 4);
    ctx.save();
    ctx.beginPath();
    ctx.arc(bx, by, r, 0, Math.PI * 2);
    ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    ctx.clip();
    const k = (r * 1.4) / (f.shieldY * 2.4);
    ctx.translate(bx, by + r * 0.6);
    ctx.scale((p.facing >= 0 ? 1 : -1) * k, -k);
    ctx.lineWidth = 1 / k;
    ctx.strokeStyle = "#0b0f18";
    drawFighter(ctx, f, p.pose);
    ctx.restore();
    this.drawn.fighters++;
  }

  // The real game's fighter: an outline, and a line from it to the dream's fighter of the same port.
  _ghost(p, dream, v) {
    if (p.x === null || p.y === null || p.pose === "dead") return;
    const ctx = this.ctx;
    const f = fighterOf(p.character);
    const px = v.X(p.x), py = v.Y(p.y);
    const twin = dream.find((d) => d.port === p.port);
    ctx.save();
    if (twin && twin.x !== null && twin.y !== null) {
      ctx.beginPath();
      ctx.moveTo(px, py - f.shieldY * v.s);
      ctx.lineTo(v.X(twin.x), v.Y(twin.y) - f.shieldY * v.s);
      ctx.setLineDash([4, 4]);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.45)";
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.translate(px, py);
    ctx.scale(v.s * (p.facing >= 0 ? 1 : -1), -v.s);
    this._posed(p, f, p.facing, performance.now());
    ctx.globalAlpha = 0.8;
    ctx.lineWidth = 1.6 / v.s;
    ctx.strokeStyle = hexAlpha(PORT_COLORS[p.port] || "#ffffff", 0.95);
    ctx.setLineDash([3 / v.s, 2 / v.s]);
    drawFighter(ctx, f, p.pose, { ghost: true });
    ctx.restore();
    ctx.fillStyle = "rgba(255, 255, 255, 0.7)";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(`real P${p.port}`, px, py + 12);
    this.drawn.ghosts++;
  }

  // Items and projectiles: a dot with a streak along its velocity (lasers and missiles read as streaks), in the
  // owner's colour; the real game's as outlines.
  _item(it, v, real) {
    const ctx = this.ctx;
    const x = v.X(it.x), y = v.Y(it.y);
    if (x < -20 || x > v.W + 20 || y < -20 || y > v.H + 20) return;
    const owner = it.owner === 1 || it.owner === 2 ? PORT_COLORS[it.owner] : "#f6e05e";
    const vx = it.vx || 0, vy = it.vy || 0;
    ctx.save();
    ctx.beginPath();
    ctx.moveTo(x - vx * v.s * 2, y + vy * v.s * 2);
    ctx.lineTo(x, y);
    ctx.lineWidth = Math.max(2, v.s * 1.2);
    ctx.strokeStyle = hexAlpha(owner, real ? 0.5 : 0.9);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(x, y, Math.max(2.5, v.s * 1.5), 0, Math.PI * 2);
    if (real) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke(); } else { ctx.fillStyle = "#fffbe0"; ctx.fill(); }
    ctx.restore();
    this.drawn.items++;
  }

  // -- KO ---------------------------------------------------------------------------------------------------------

  _koCheck(p, g, now) {
    const was = this.lastPose[p.port];
    this.lastPose[p.port] = p.pose;
    if (p.pose !== "dead" || was === "dead" || was === undefined || p.x === null || p.y === null) return;
    const [left, right, top, bottom] = g ? g.blast : [-250, 250, 200, -140];
    this.effects.push({
      x: Math.min(Math.max(p.x, left), right), y: Math.min(Math.max(p.y, bottom), top),
      color: PORT_COLORS[p.port] || "#fff", until: now + KO_MS,
    });
  }

  _effects(v, now) {
    const ctx = this.ctx;
    this.effects = this.effects.filter((e) => e.until > now);
    for (const e of this.effects) {
      const t = 1 - (e.until - now) / KO_MS;
      const x = Math.min(Math.max(v.X(e.x), 0), v.W), y = Math.min(Math.max(v.Y(e.y), 0), v.H);
      ctx.save();
      ctx.globalAlpha = 1 - t;
      ctx.strokeStyle = e.color;
      ctx.lineWidth = 6 * (1 - t) + 1;
      for (let k = 0; k < 10; k++) {
        const a = (k / 10) * Math.PI * 2;
        ctx.beginPath();
        ctx.moveTo(x + Math.cos(a) * 20 * t, y + Math.sin(a) * 20 * t);
        ctx.lineTo(x + Math.cos(a) * (40 + 160 * t), y + Math.sin(a) * (40 + 160 * t));
        ctx.stroke();
      }
      ctx.beginPath();
      ctx.arc(x, y, 30 + 90 * t, 0, Math.PI * 2);
      ctx.fillStyle = hexAlpha("#ffffff", 0.4 * (1 - t));
      ctx.fill();
      ctx.restore();
    }
  }

  // -- HUD, meter, overlay ----------------------------------------------------------------------------------------

  _hud(st) {
    const ctx = this.ctx, c = this.canvas;
    const top = c.height - HUD_HEIGHT + 2;
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
    ctx.fillRect(0, top - 2, c.width, HUD_HEIGHT);
    const n = st.players.length;
    st.players.forEach((p, i) => {
      const cx = (c.width / (n + 1)) * (i + 1);
      const color = PORT_COLORS[p.port] || "#aaa";
      const f = fighterOf(p.character);
      const pct = Math.max(0, p.percent || 0);
      const heat = Math.min(pct / 150, 1);
      ctx.textAlign = "center";
      ctx.fillStyle = `rgb(255, ${Math.round(255 - 200 * heat)}, ${Math.round(255 - 230 * heat)})`;
      ctx.font = "bold 34px sans-serif";
      ctx.fillText(p.pose === "dead" ? "KO" : `${pct.toFixed(0)}%`, cx, top + 40);
      ctx.font = "12px sans-serif";
      ctx.fillStyle = color;
      ctx.fillText(`P${p.port} ${p.character_name}`, cx, top + 56);
      // stock icons: the fighter's own silhouette, small (drawn once, then copied)
      const stocks = Math.max(0, Math.min(p.stocks, 8));
      const icon = this._stockIcon(p.character, color);
      for (let k = 0; k < stocks; k++) ctx.drawImage(icon, cx - (stocks - 1) * 9 + k * 18 - 9, top + 66);
    });
    const t = Math.max(0, st.timer);
    const mm = Math.floor(t / 60), ss = Math.floor(t % 60), cc = Math.floor((t * 100) % 100);
    ctx.textAlign = "center";
    ctx.fillStyle = "#fff";
    ctx.font = "bold 24px monospace";
    ctx.fillText(`${pad(mm)}:${pad(ss)}.${pad(cc)}`, c.width / 2, 30);
    ctx.font = "12px monospace";
    ctx.fillStyle = "#a0aec0";
    ctx.fillText(`frame ${st.frame}${st.paused ? "  ❚❚ paused" : ""}`, c.width / 2, 48);
  }

  _stockIcon(character, color) {
    const key = `${character}/${color}`;
    this.icons = this.icons || {};
    if (!this.icons[key]) {
      const icon = document.createElement("canvas");
      icon.width = 18;
      icon.height = 18;
      const ictx = icon.getContext("2d");
      const f = fighterOf(character);
      const k = 15 / (f.shieldY * 2.4);
      ictx.translate(9, 17);
      ictx.scale(k, -k);
      ictx.lineWidth = 1 / k;
      ictx.strokeStyle = color;
      drawFighter(ictx, f, "plain");
      this.icons[key] = icon;
    }
    return this.icons[key];
  }

  // The divergence meter: per player, how far the dream is from the real game (position, action) now and on
  // average since the takeover.
  _meter(real, players) {
    const ctx = this.ctx, c = this.canvas;
    const d = real.divergence;
    if (!d) return;
    const x0 = c.width - 300, y0 = 8, w = 292;
    ctx.save();
    ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
    ctx.fillRect(x0, y0, w, 28 + 34 * players.length);
    ctx.font = "bold 12px sans-serif";
    ctx.textAlign = "left";
    ctx.fillStyle = "#e2e8f0";
    ctx.fillText(real.ended ? `the real game ended — after ${d.frames} frames:` : `dream vs real game, ${d.frames} frames`, x0 + 8, y0 + 17);
    players.forEach((p, i) => {
      const y = y0 + 30 + 34 * i;
      const color = PORT_COLORS[p.port] || "#aaa";
      const dist = d.distance ? d.distance[i] : null;
      const same = d.same_action ? d.same_action[i] : null;
      ctx.fillStyle = color;
      ctx.font = "bold 11px sans-serif";
      ctx.fillText(`P${p.port}`, x0 + 8, y + 11);
      // distance bar: 0..60 units
      const frac = dist === null ? 0 : Math.min(dist / 60, 1);
      ctx.fillStyle = "#26324a";
      ctx.fillRect(x0 + 34, y + 2, 120, 10);
      ctx.fillStyle = frac < 0.15 ? "#48bb78" : (frac < 0.5 ? "#ecc94b" : "#f56565");
      ctx.fillRect(x0 + 34, y + 2, 120 * frac, 10);
      ctx.fillStyle = "#e2e8f0";
      ctx.font = "11px monospace";
      const now = real.ended ? "" : `${dist === null ? "–" : dist.toFixed(1)}u ${same ? "same action" : "other action"}`;
      ctx.fillText(now, x0 + 160, y + 11);
      const mean = d.mean_distance[i];
      ctx.fillStyle = "#a0aec0";
      ctx.fillText(`mean ${mean === null ? "–" : mean.toFixed(1)}u, actions agree ${(100 * d.action_agreement[i]).toFixed(0)}%`, x0 + 34, y + 26);
    });
    ctx.restore();
  }

  _banner(text) {
    const ctx = this.ctx, c = this.canvas;
    ctx.save();
    ctx.fillStyle = "rgba(43, 108, 176, 0.85)";
    ctx.fillRect(0, 60, c.width, 24);
    ctx.fillStyle = "#fff";
    ctx.font = "bold 13px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(text, c.width / 2, 77);
    ctx.restore();
  }

  _overlay(st) {
    const ctx = this.ctx;
    const o = this.overlay;
    const r = this.renderStats();
    const lines = [
      `fps ${st && st.fps !== undefined ? st.fps.toFixed(1) : "–"} (server)  ${o.clientFps ? o.clientFps.toFixed(1) : "–"} (received)`,
      `step ${st && st.step_ms !== undefined ? st.step_ms.toFixed(2) : "–"} ms  tick ${st && st.tick_ms !== undefined ? st.tick_ms.toFixed(2) : "–"} ms`,
      `render p99 ${r.p99 === null ? "–" : r.p99.toFixed(2)} ms  temperature ${st && st.temperature !== undefined ? st.temperature : "–"}`,
    ];
    if (st && st.rules) {
      const rc = st.rules;
      lines.push(`rules ${st.rules_on ? "on" : "off"}: KOs ${rc.ko_blast_zone + rc.ko_model}, respawns ${rc.respawn}, ` +
        `stocks ${rc.stocks_fixed}, percent ${rc.percent_fixed}, floor ${rc.floor_fixed}`);
    }
    ctx.font = "12px monospace";
    ctx.textAlign = "left";
    ctx.fillStyle = "rgba(0, 0, 0, 0.5)";
    ctx.fillRect(6, 6, 330, 8 + 15 * lines.length);
    ctx.fillStyle = "#9ae6b4";
    lines.forEach((l, i) => ctx.fillText(l, 12, 22 + 15 * i));
  }
}

function pad(n) { return String(n).padStart(2, "0"); }

function hexAlpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}
