"""The markdown of a run card (``card.md``): the same facts as ``card.json``, rendered for people."""

from __future__ import annotations

import json

import yaml

from meleewm.train.card_common import (KEY_METRICS, PENDING, PROBE_STEPS, finite, format_duration, format_money,
                                       format_number, higher_is_better)


def _table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _counts(counter: dict, limit: int = 12) -> str:
    items = list(counter.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def render(facts: dict, prior: list[dict] | None = None) -> str:
    f = facts
    config = f["config"]
    out: list[str] = [f"# Run card: {f['name']}", ""]
    reason = (f.get("results") or {}).get("stop_reason")
    out.append(f"- **status**: {f['status']}" + (f" ({reason})" if reason and reason != f["status"] else ""))
    out.append(f"- **created**: {f['created']} on {f['host']} (meleewm {f['meleewm']})")
    out.append(f"- **run folder**: `{f['out_dir']}`  config hash `{f['config_hash']}`")
    for s in f.get("sessions", []):
        out.append(f"- **session**: started {s['started']}" + (f" (resumed at step {s['resumed_at_step']})"
                                                                  if s.get("resumed_at_step") else ""))
    out += ["", "## Goal", "", f["goal"] or "No goal stated (set `card.goal` in the config).", ""]

    # Targets and kill thresholds
    out += ["## Targets", ""]
    baseline = f.get("baseline") or {}
    prior = prior or []
    kill = config["kill"]
    metrics = list(dict.fromkeys([*f["targets"], *kill["min"], *kill["max"], *KEY_METRICS]))
    rows = []
    for m in metrics:
        target = f["targets"].get(m)
        bounds = [f">= {kill['min'][m]:g}" if m in kill["min"] else "", f"<= {kill['max'][m]:g}" if m in kill["max"]
                  else ""]
        priors = [p["metrics"].get(m) for p in prior if finite(p["metrics"].get(m))]
        best_prior = (max(priors) if higher_is_better(m, target) else min(priors)) if priors else None
        rows.append([m, target or "—", format_number(baseline.get(m)) if baseline else "not measured",
                     format_number(best_prior) if best_prior is not None else "none",
                     " and ".join(b for b in bounds if b) + (f" after epoch {max(1, kill['after_epoch'])}"
                                                              if any(bounds) else "") or "—"])
    out.append(_table(["metric", "target", "baseline (untrained)", "best prior run", "kill unless"], rows,
                      "lllll"))
    out += ["", "Baseline: the validation metrics of the untrained model (the motion prior), measured "
            + ("by the probe." if baseline else "when a probe or a launch measures them."), ""]
    out += ["### Kill thresholds", ""] + [f"- {line}" for line in f["kill"]] + [""]

    # Data
    d, s = f["dataset"], f["split"]
    out += ["## Data", "", f"- **dataset**: `{d['path']}` (games hash `{d['hash']}`)",
            f"- **size**: {d['games']:,} games, {d['frames']:,} frames, {d['hours']:.2f} hours of play",
            f"- **characters** (players): {_counts(d['characters'])}", f"- **stages**: {_counts(d['stages'])}",
            f"- **split**: by game id hash (val fraction {s['val_fraction']:g}, seed {s['split_seed']}), filters "
            f"{', '.join(s['filters'])}" + (f", training games capped at {s['max_games']}" if s["max_games"] else ""),
            ""]
    out.append(_table(["split", "games", "frames", f"windows of {s['seq_len']} frames"],
                      [[name, f"{s[name]['games']:,}", f"{s[name]['frames']:,}", f"{s[name]['windows']:,}"]
                       for name in ("train", "val")]))
    if s["val_from_train"]:
        out += ["", "No game fell on the validation side of the split: validation uses a training game."]
    out.append("")

    # Model and encoding
    m, e = f["model"], f["encoding"]
    shape = m["shape"]
    body = (f"Mamba-2, d_model {shape['d_model']}, {shape['n_layer']} layers, d_state {shape['d_state']}, "
            f"headdim {shape['headdim']}, expand {shape['expand']}, chunk {shape['chunk_size']}"
            if shape["body"] == "mamba2" else
            f"frame-stack MLP, d_model {shape['d_model']}, {shape['n_layer']} layers, context {shape['context']}, "
            f"hidden x{shape['hidden_mult']}")
    out += ["## Model", "", f"- **architecture**: {body}",
            f"- **parameters**: {m['params']:,} (exact: sum of p.numel())",
            f"- **embeddings**: action {shape['action_embed_dim']}, other categorical {shape['cat_embed_dim']}, "
            f"constants {shape['const_embed_dim']}",
            "- **parameters by part**: " + ", ".join(f"{k} {v:,}" for k, v in m["params_by_part"].items()), ""]
    out += [f"### Encoding (hash `{e['hash']}`, version {e['version']}, items {'on' if e['items'] else 'off'})", ""]
    out.append(_table(["group", "fields", "input width", "output width", "notes"],
                      [[g["group"], g["fields"], g["input"], g["output"], g["note"]] for g in e["groups"]]
                      + [["total", "", e["input_total"], e["output_total"],
                          f"input projection reads {m['input_width']}"]], "lrrrl"))
    out += ["", f"Heads and loss weights (continuous loss: {e['continuous_loss']}):", ""]
    out.append(_table(["head", "width", "loss weight"], [[h["head"], h["width"], f"{h['weight']:g}"]
                                                         for h in e["heads"]]))
    out.append("")

    # Training
    t = f["training"]
    out += ["## Training", ""]
    out += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in t.items()] + [""]

    # Estimate
    out += ["## Estimate", ""]
    est = f.get("estimate")
    if est:
        out += [f"- **measured**: {est['source']} on {est['device']} ({est.get('host')})",
                f"- **batches per epoch**: {est['batches_per_epoch']:,}; **steps**: {est['total_steps']:,}; "
                f"**validations**: {est['validations']}",
                f"- **seconds per batch**: {est['seconds_per_batch']:.3f}",
                "- **validation**: " + (f"{est['val_seconds']:.1f} s each" if est["val_seconds"] is not None
                                         else "not measured yet"),
                "- **setup** (dataset, encoding caches): "
                + (format_duration(est["setup_seconds"]) if est.get("setup_seconds") is not None else "not counted"),
                f"- **total wall time**: {format_duration(est['total_seconds'])} (training "
                f"{format_duration(est['train_seconds'])}; the final eval is not counted)"]
        if est.get("cost") is not None:
            out.append(f"- **cost**: {est['total_seconds'] / 3600:.3g} h x {est['hourly_cost']:g}/h = "
                       f"{format_money(est['cost'])}")
    elif f.get("results"):
        out.append(f"No estimate: no plan card in this folder, and the run ended before its first "
                   f"{PROBE_STEPS + 1} steps were timed.")
    else:
        out.append(f"{PENDING}: measured over the first training steps of the run.")
    out.append("")

    # Escape hatches
    c = f["commands"]
    out += ["## Escape hatches", "", f"- **launch**: `{c['launch']}`", f"- **resume**: `{c['resume']}`",
            "- **if the resume fails**:",
            f"  - *the config changed* (weights do not fit, or the encoding differs): resume with the saved config: "
            f"`{c['resume_saved_config']}`",
            "  - *last.pt is unreadable*: copy best.pt over last.pt and resume (the steps after the best epoch are "
            "lost), or start again in a new --out",
            "  - *the dataset moved*: pass its new path; the split is by game-id hash, so the same games give the "
            "same split",
            "  - *out of memory*: exact resume needs the same global batch; start a new run with a smaller "
            "data.batch_size or data.seq_len",
            "  - *a kill threshold fired*: resuming runs on with the same thresholds; override them "
            "(e.g. `kill.min={}`) only after reading why it fired", ""]

    # Prior runs
    out += ["## Prior comparable runs", ""]
    if prior:
        out.append(_table(["run", "date", "status", "shares", "params", "rollout_position_error", "change_acc",
                           "time"],
                          [[p["run"], (p.get("date") or "")[:16], p.get("status") or "", p["shares"],
                            format_number(p.get("params")), format_number(p["metrics"].get("rollout_position_error")),
                            format_number(p["metrics"].get("change_acc")), format_duration(p.get("wall_seconds"))] for p in prior],
                          "lllllrrr"))
    else:
        out.append("None: no sibling run folder shares this dataset or this encoding.")
    out.append("")

    out += ["## Results", ""]
    results = f.get("results")
    out += _render_results(f, results) if results else [f"{PENDING}: filled in when the run ends.", ""]

    out += ["## Config (resolved)", "", "```yaml", yaml.safe_dump(json.loads(json.dumps(config)),
                                                                   sort_keys=False).rstrip(), "```", ""]
    return "\n".join(out)


def _render_results(f: dict, r: dict) -> list[str]:
    out = [f"- **stopped**: {r['stop_reason']}", f"- **status**: {f['status']}",
           f"- **steps**: {r['steps']:,}; **epochs**: {r['epochs']}; **ended**: {r['ended']}"]
    est = f.get("estimate")
    wall = r["wall_seconds"]
    run_wall = wall - (r.get("eval_seconds") or 0.0)  # what the estimate covers: setup, training, validation
    line = f"- **wall time**: {format_duration(wall)}: setup and training {format_duration(run_wall)} (of which training " \
           f"loop {format_duration(r['train_seconds'])})"
    line += f", eval {format_duration(r['eval_seconds'])}" if r.get("eval_seconds") is not None else ", no eval"
    if est:
        ratio = run_wall / est["total_seconds"] if est["total_seconds"] else float("nan")
        line += f"; setup and training against the estimate of {format_duration(est['total_seconds'])}: {ratio:.2f}x"
    else:
        line += "; no estimate was made"
    out.append(line)
    if r.get("seconds_per_batch") is not None:
        out.append(f"- **seconds per batch**: {r['seconds_per_batch']:.3f} measured"
                   + (f", {est['seconds_per_batch']:.3f} estimated" if est else ""))
    cost = f.get("hourly_cost") or 0.0
    if cost:
        out.append(f"- **cost**: {format_money(wall / 3600 * cost)} ({wall / 3600:.3g} h x {cost:g}/h) against an "
                   f"estimate of " + (format_money(est["cost"]) if est and est.get("cost") is not None else "none"))
    else:
        out.append("- **cost**: no hourly cost set (card.hourly_cost / --gpu-hourly-cost)")
    out.append("")
    rows = []
    for row in r["metrics"]:
        target = row["target"]
        rows.append([row["metric"], target or "no target", format_number(row["final"]), format_number(row["best"]),
                     _met(row.get("final_met"), target), _met(row.get("best_met"), target)])
    out.append(_table(["metric", "target", "final", "best", "final vs target", "best vs target"], rows,
                      "llrrll"))
    out += ["", "Final: the last validation; best: the best value over all validations.", ""]
    out += ["### Rollout evaluation (`meleewm eval` of best.pt)", ""]
    ev = r.get("eval") or {}
    if ev.get("error"):
        out += [f"Not run: {ev['error']}", ""]
    else:
        out += [f"{ev['starts']} starts on {ev['games']} validation games, warm-up {ev['warmup']}, horizon "
                f"{ev['horizon']}; report `{ev['report']}`, metrics `{ev['metrics']}`", ""]
        out += [ev["summary_table"], "", ev["horizon_table"], ""]
    out += ["### Files", ""] + [f"- {name}: `{path}`" for name, path in r["links"].items()] + [""]
    return out


def _met(flag, target) -> str:
    if not target:
        return "no target"
    return "met" if flag else ("missed" if flag is not None else "missed (no value)")


def eval_tables(metrics: dict) -> tuple[str, str]:
    """Markdown: the summary (means over steps 1..K per predictor) and the per-horizon table of an eval."""
    summary = metrics.get("summary") or {}
    ks = [row["k"] for row in next(iter(summary.values()), [])]
    header = ["predictor"] + [c for k in ks for c in (f"pos 1..{k}", f"act 1..{k}")]
    rows = [[name] + [c for row in rs for c in (format_number(row.get("position_error"), 3),
                                                 format_number(row.get("action_accuracy"), 3))]
            for name, rs in summary.items()]
    summary_table = _table(header, rows)
    rollout = metrics.get("rollout") or {}
    names = list(rollout)
    horizons = [row["horizon"] for row in next(iter(rollout.values()), [])]
    by = {n: {row["horizon"]: row for row in rollout[n]} for n in names}
    rows = [[h] + [format_number(by[n][h].get("position_error"), 3) for n in names]
            + [format_number(by[n][h].get("action_accuracy"), 3) for n in names] for h in horizons]
    horizon_table = _table(["horizon"] + [f"pos {n}" for n in names] + [f"act {n}" for n in names], rows)
    return summary_table, horizon_table
