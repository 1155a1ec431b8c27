// Canvas renderer: the stage from the server's geometry, each character as a body with cues, a HUD and an overlay.

const PORT_COLORS = { 1: "#e8424b", 2: "#3f7be8", 3: "#e8c63f", 4: "#41b85c" };
const DEAD_MAX_ACTION = 10;   // actions 0..10 are KO states

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.stages = {};
    this.state = null;
    this.overlay = {};
  }

  setStages(stages) { this.stages = stages || {}; }

  // World (Melee units, y up) → canvas pixels, fitting the stage's blast zones with a margin.
  _view(g) {
    const W = this.canvas.width, H = this.canvas.height - 90;   // 90 px for the HUD
    const [left, right, top, bottom] = g ? g.blast : [-250, 250, 200, -140];
    const m = 12;
    const w = right - left + 2 * m, h = top - bottom + 2 * m;
    const s = Math.min(W / w, H / h);
    const ox = W / 2 - ((left + right) / 2) * s;
    const oy = H / 2 + ((top + bottom) / 2) * s;
    return { s, X: (x) => ox + x * s, Y: (y) => oy - y * s, W, H, left, right, top, bottom };
  }

  draw() {
    const ctx = this.ctx, c = this.canvas;
    const st = this.state;
    const g = st ? this.stages[String(st.stage)] : null;
    const v = this._view(g);
    const bg = ctx.createLinearGradient(0, 0, 0, c.height);
    bg.addColorStop(0, "#0d1b2a");
    bg.addColorStop(1, "#1b263b");
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, c.width, c.height);
    if (g) this._stage(g, v);
    if (st) {
      for (const p of st.players) this._player(p, v);
      this._hud(st);
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
    // blast zones
    ctx.save();
    ctx.setLineDash([8, 6]);
    ctx.strokeStyle = "rgba(255, 90, 90, 0.7)";
    ctx.lineWidth = 2;
    ctx.strokeRect(v.X(g.blast[0]), v.Y(g.blast[2]), (g.blast[1] - g.blast[0]) * v.s, (g.blast[2] - g.blast[3]) * v.s);
    ctx.restore();
    // main stage: flat top from ledge to ledge, sides tapering down
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
    // ledges
    ctx.fillStyle = "#f6e05e";
    for (const x of [-L, L]) ctx.fillRect(v.X(x) - 3, v.Y(y0) - 3, 6, 6);
    // platforms
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
    ctx.fillText(g.name, v.X(g.blast[0]) + 6, v.Y(g.blast[3]) - 8);
  }

  _player(p, v) {
    if (p.x === null || p.y === null) return;   // a non-finite prediction: nothing to draw
    const ctx = this.ctx;
    const color = PORT_COLORS[p.port] || "#aaa";
    const dead = p.action >= 0 && p.action <= DEAD_MAX_ACTION;
    // characters outside the view are drawn at its edge, with an arrow
    const margin = 48;
    let px = v.X(p.x), py = v.Y(p.y);
    const off = px < 0 || px > v.W || py < 0 || py > v.H;
    px = Math.min(Math.max(px, margin), v.W - margin);
    py = Math.min(Math.max(py, margin), v.H - 18);
    const h = 16 * v.s, w = 8 * v.s;
    ctx.save();
    ctx.globalAlpha = dead ? 0.35 : (p.invulnerable && (Math.floor(performance.now() / 80) % 2) ? 0.5 : 1);
    // shield bubble
    if (p.shielding && !dead) {
      const r = Math.max(4, 12 * v.s * Math.max(p.shield, 0) / 60);
      ctx.beginPath();
      ctx.arc(px, py - h / 2, r, 0, Math.PI * 2);
      ctx.fillStyle = hexAlpha(color, 0.35);
      ctx.fill();
    }
    // body
    ctx.beginPath();
    ctx.ellipse(px, py - h / 2, w / 2, h / 2, 0, 0, Math.PI * 2);
    ctx.fillStyle = p.in_hitlag ? "#ffffff" : color;
    ctx.fill();
    ctx.lineWidth = p.hitstun ? 3 : 1.5;
    ctx.strokeStyle = p.hitstun ? "#ffd23f" : "#111";
    ctx.stroke();
    // facing: an eye and a nose on the facing side
    const f = p.facing >= 0 ? 1 : -1;
    ctx.beginPath();
    ctx.moveTo(px + f * w / 2, py - h * 0.72);
    ctx.lineTo(px + f * (w / 2 + 5), py - h * 0.62);
    ctx.lineTo(px + f * w / 2, py - h * 0.52);
    ctx.closePath();
    ctx.fillStyle = "#111";
    ctx.fill();
    ctx.beginPath();
    ctx.arc(px + f * w * 0.2, py - h * 0.7, Math.max(1.5, v.s * 1.2), 0, Math.PI * 2);
    ctx.fillStyle = "#fff";
    ctx.fill();
    // hitstun: spikes around the body
    if (p.hitstun) {
      ctx.strokeStyle = "#ffd23f";
      ctx.lineWidth = 2;
      for (let k = 0; k < 6; k++) {
        const a = (k / 6) * Math.PI * 2;
        ctx.beginPath();
        ctx.moveTo(px + Math.cos(a) * w * 0.8, py - h / 2 + Math.sin(a) * h * 0.6);
        ctx.lineTo(px + Math.cos(a) * w * 1.2, py - h / 2 + Math.sin(a) * h * 0.85);
        ctx.stroke();
      }
    }
    if (dead) {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(px - w / 2, py - h);
      ctx.lineTo(px + w / 2, py);
      ctx.moveTo(px + w / 2, py - h);
      ctx.lineTo(px - w / 2, py);
      ctx.stroke();
    }
    ctx.restore();
    if (off) {
      ctx.fillStyle = color;
      ctx.font = "bold 14px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("⚠ off view", px, py + 14);
    }
    // labels: port and action name
    ctx.fillStyle = "#e2e8f0";
    ctx.font = "11px monospace";
    ctx.textAlign = "center";
    ctx.fillText(p.action_name + (p.in_hitlag ? " [hitlag]" : ""), px, py - h - 6);
    ctx.fillStyle = color;
    ctx.font = "bold 12px sans-serif";
    ctx.fillText(`P${p.port}`, px, py - h - 19);
  }

  _hud(st) {
    const ctx = this.ctx, c = this.canvas;
    const top = c.height - 88;
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
    ctx.fillRect(0, top, c.width, 88);
    const n = st.players.length;
    st.players.forEach((p, i) => {
      const cx = (c.width / (n + 1)) * (i + 1);
      const color = PORT_COLORS[p.port] || "#aaa";
      const pct = Math.max(0, p.percent || 0);
      const heat = Math.min(pct / 150, 1);
      ctx.textAlign = "center";
      ctx.fillStyle = `rgb(255, ${Math.round(255 - 200 * heat)}, ${Math.round(255 - 230 * heat)})`;
      ctx.font = "bold 34px sans-serif";
      ctx.fillText(`${pct.toFixed(0)}%`, cx, top + 40);
      ctx.font = "12px sans-serif";
      ctx.fillStyle = color;
      ctx.fillText(`P${p.port} ${p.character_name}`, cx, top + 58);
      for (let k = 0; k < Math.max(0, Math.min(p.stocks, 8)); k++) {
        ctx.beginPath();
        ctx.arc(cx - 27 + k * 18, top + 74, 6, 0, Math.PI * 2);
        ctx.fillStyle = color;
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    });
    // timer
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

  _overlay(st) {
    const ctx = this.ctx;
    const o = this.overlay;
    const lines = [
      `fps ${st ? st.fps.toFixed(1) : "–"} (server)  ${o.clientFps ? o.clientFps.toFixed(1) : "–"} (received)`,
      `step ${st ? st.step_ms.toFixed(2) : "–"} ms  tick ${st ? st.tick_ms.toFixed(2) : "–"} ms`,
      `temperature ${st ? st.temperature : "–"}`,
    ];
    if (st && st.rules) {
      const r = st.rules;
      lines.push(`rules ${st.rules_on ? "on" : "off"}: KOs ${r.ko_blast_zone + r.ko_model}, respawns ${r.respawn}, ` +
        `stocks ${r.stocks_fixed}, percent ${r.percent_fixed}, floor ${r.floor_fixed}`);
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
