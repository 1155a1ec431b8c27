"""Run cards: every training run plans itself before launch and reports itself after.

A card is two files in the run folder: ``card.json`` (the facts, machine-readable) and ``card.md`` (the same
facts rendered for people). ``meleewm plan`` writes one without training; ``meleewm train`` writes one at
launch, keeps it up to date while it runs, and adds a **results** section when the run ends (finished, killed
by a threshold, or interrupted). ``meleewm runs`` lists the runs of a folder from their cards (runs.py);
card_markdown.py renders ``card.md``.

What a card holds: the goal and target metrics (with a baseline: the untrained model's validation metrics, and
the best prior comparable run) and the kill thresholds; the data (dataset facts and the train/val split in
games, frames and windows); the model (exact parameter count, shape, encoding widths per group, heads and their
loss weights); the training settings; a time and cost estimate; escape hatches (launch and resume commands, what
to do when a resume fails); a table of prior comparable runs (sibling folders that share the dataset or the
encoding); the resolved config.

Time estimate: ``plan`` measures it with a short probe (one validation of the untrained model, then a few
training steps) on this machine. ``train`` reuses the estimate of a ``plan`` card in the same folder when the
config and the dataset match; otherwise it measures the run's own first steps (and refines the estimate with
the first epoch's validation time).

This module sits in ``meleewm.train``: it imports nothing from eval/ (an evaluation comes in as an object with
``meta`` and ``metrics``, ``meleewm.eval.report.EvalResult``, passed by the command line).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shlex
import socket
import time
from collections import Counter
from pathlib import Path

import torch

from meleewm import __version__
from meleewm.atomic import write_text_atomic
from meleewm.errors import MeleewmError
from meleewm.melee import character_name, stage_name
from meleewm.replay.dataset import dataset_hash
from meleewm.train.card_common import CARD_JSON, CARD_MD, KEY_METRICS, PROBE_STEPS, finite, higher_is_better
from meleewm.train.card_markdown import eval_tables, render
from meleewm.train.config import TrainConfig, config_to_dict, parse_target
from meleewm.train.liveness import Heartbeat, live_owner
from meleewm.train.runs import eval_summary, prior_runs

CARD_FORMAT = "meleewm-run-card"

def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _sha(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def config_hash(config: TrainConfig) -> str:
    """What decides the training (everything but the name and the card section)."""
    values = config_to_dict(config)
    values.pop("card", None)
    values.pop("name", None)
    return _sha(json.dumps(values, sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------------------------
# Targets


def target_met(value, target: str) -> bool | None:
    if not finite(value):
        return None
    op, bound = parse_target(target)
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def best_of(history: list[dict], metric: str, target: str | None = None):
    values = [h[metric] for h in history if finite(h.get(metric))]
    if not values:
        return None
    return max(values) if higher_is_better(metric, target) else min(values)


# ---------------------------------------------------------------------------------------------------------------
# Facts


def dataset_facts(dataset, data_path) -> dict:
    games = dataset.games.to_pylist()
    ids = sorted(g["game_id"] for g in games)
    characters = Counter(character_name(p["character"]) for g in games for p in (g["players"] or []))
    stages = Counter(stage_name(g["stage"]) for g in games)
    return {
        "path": str(Path(data_path).resolve()), "hash": dataset_hash(ids), "games": len(games),
        "frames": int(sum(g["frame_count"] for g in games)),
        "hours": round(sum(g["duration_s"] or 0.0 for g in games) / 3600, 3),
        "characters": dict(characters.most_common()), "stages": dict(stages.most_common()),
    }


def split_facts(trainer) -> dict:
    """The train/val split the trainer really uses (val falls back to one training game on tiny datasets)."""
    counts = dict(zip(trainer.dataset.games.column("game_id").to_pylist(),
                      trainer.dataset.games.column("frame_count").to_pylist()))

    def side(ids, windows) -> dict:
        return {"games": len(ids), "frames": int(sum(counts[g] for g in ids)), "windows": len(windows)}

    return {"train": side(trainer.train_ids, trainer.train_windows), "val": side(trainer.val_ids, trainer.val_windows),
            "val_from_train": bool(set(trainer.val_ids) & set(trainer.train_ids)),
            "seq_len": trainer.config.data.seq_len, "filters": trainer.config.data.filters(),
            "val_fraction": trainer.config.data.val_fraction, "split_seed": trainer.config.data.split_seed,
            "max_games": trainer.config.data.max_games}


def model_facts(model) -> dict:
    by_part: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = name.split(".")[0]
        by_part[part] = by_part.get(part, 0) + param.numel()
    return {"params": int(sum(p.numel() for p in model.parameters())), "params_by_part": by_part,
            "shape": dict(vars(model.config)), "input_width": model.input_proj.in_features}


def encoding_facts(model, loss_config) -> dict:
    """Input and output widths per group (both players, one frame), and the heads with their loss weights."""
    spec, cfg = model.spec, model.config
    emb = sum(e.embedding_dim for e in model.cat_embeddings)
    weights, field_weights = loss_config.weights, loss_config.field_weights
    groups = [
        {"group": "continuous", "fields": spec.n_cont, "input": 2 * 2 * spec.n_cont, "output": 2 * spec.n_cont,
         "note": "values + presence masks in; a change per field out"},
        {"group": "binary", "fields": spec.n_bin, "input": 2 * 2 * spec.n_bin, "output": 2 * spec.n_bin,
         "note": "0/1 + masks in; logits out"},
        {"group": "categorical", "fields": spec.n_cat, "input": 2 * emb,
         "output": 2 * sum(size for _, size in spec.cat_fields),
         "note": "embeddings in; logits over " + ", ".join(f"{n} {s}" for n, s in spec.cat_fields) + " out"},
        {"group": "controllers", "fields": spec.n_ctrl, "input": 2 * spec.n_ctrl, "output": 0,
         "note": "read, never predicted"},
        {"group": "constants", "fields": 3, "input": 3 * cfg.const_embed_dim, "output": 0,
         "note": f"stage and 2 characters, embedded ({len(spec.stage_vocab)} stages, {len(spec.char_vocab)} chars)"},
    ]
    heads = [{"head": "cont", "width": 2 * spec.n_cont, "weight": weights.get("cont", 1.0)},
             {"head": "binary", "width": 2 * spec.n_bin, "weight": weights.get("binary", 1.0)}]
    heads += [{"head": f"cat/{name}", "width": 2 * size,
               "weight": weights.get("cat", 1.0) * field_weights.get(name, 1.0)} for name, size in spec.cat_fields]
    if spec.items:
        s = spec.item_slots
        groups.append({"group": "items", "fields": s, "input": s * (1 + 2 * cfg.cat_embed_dim + spec.n_item_cont),
                       "output": s * (1 + spec.n_item_types + spec.n_item_owners + spec.n_item_cont),
                       "note": f"{s} slots: present, type, owner, {spec.n_item_cont} continuous"})
        for name, width in (("present", s), ("type", s * spec.n_item_types), ("owner", s * spec.n_item_owners),
                            ("cont", s * spec.n_item_cont)):
            heads.append({"head": f"items/{name}", "width": width,
                          "weight": weights.get("items", 1.0) * field_weights.get(name, 1.0)})
    return {"hash": spec.hash()[:16], "version": spec.version, "items": spec.items, "groups": groups,
            "input_total": sum(g["input"] for g in groups), "output_total": sum(g["output"] for g in groups),
            "heads": heads, "continuous_loss": loss_config.continuous}


def training_facts(trainer) -> dict:
    config = trainer.config
    o, sf = config.optim, config.self_forcing
    planned = min(trainer.total_steps, o.max_steps) if o.max_steps else trainer.total_steps
    return {"device": str(trainer.device), "processes": trainer.world, "bf16": config.bf16, "compile": config.compile,
            "seed": config.seed, "batch_size": config.data.batch_size, "seq_len": config.data.seq_len,
            "optimizer": f"AdamW lr {o.lr:g}, betas {tuple(o.betas)}, weight decay {o.weight_decay:g}, "
                         f"grad clip {o.grad_clip:g}",
            "schedule": f"linear warm-up {o.warmup_steps} steps, cosine to {o.min_lr_ratio:g} x lr",
            "epochs": o.epochs, "steps_per_epoch": trainer.steps_per_epoch, "max_steps": o.max_steps,
            "total_steps": planned, "validations": planned // max(1, trainer.steps_per_epoch),
            "self_forcing": (f"p {sf.prob:g}, unroll 1..{sf.max_unroll}, from epoch {sf.start_epoch}"
                             if sf.enabled else "off"),
            "augmentation": f"swap players {config.data.swap_players}, mirror {config.data.mirror}",
            "validation": f"{config.eval.max_val_batches} teacher-forced batches, {len(trainer.starts)} rollout "
                          f"starts x {config.eval.rollout_horizon} frames after {config.eval.warmup} warm-up"}


def kill_lines(config: TrainConfig) -> list[str]:
    k = config.kill
    lines = [f"non-finite training loss: {'stop (the bad update is skipped)' if k.nonfinite_loss else 'off'}"]
    if k.no_decrease_fraction > 0:
        lines.append(f"training loss not decreasing at {k.no_decrease_fraction:.0%} of epoch 1: stop unless the "
                     f"smoothed loss is below its start" + (f" by {k.min_decrease:.0%}" if k.min_decrease else "")
                     + f" (smoothing {k.smoothing or 'auto'})")
    else:
        lines.append("training loss not decreasing: off (kill.no_decrease_fraction = 0)")
    for name, bound in k.min.items():
        lines.append(f"{name} < {bound:g} after epoch {max(1, k.after_epoch)} or later: stop")
    for name, bound in k.max.items():
        lines.append(f"{name} > {bound:g} after epoch {max(1, k.after_epoch)} or later: stop")
    lines.append("SIGINT (Ctrl-C) / SIGTERM: stop after the current step, save last.pt, write the results "
                 "(a second Ctrl-C aborts at once)")
    return lines


def commands(config_path, data, out, overrides) -> dict:
    base = ["meleewm", "train"] + (["--config", str(config_path)] if config_path else []) + [
        "--data", str(data), "--out", str(out)] + list(overrides or [])
    return {"launch": shlex.join(base), "resume": shlex.join(base + ["--resume"]),
            "resume_saved_config": shlex.join(["meleewm", "train", "--config", str(Path(out) / "config.yaml"),
                                               "--data", str(data), "--out", str(out), "--resume"])}


def collect(trainer, *, data, out_dir, config_path=None, overrides=(), status: str = "planned") -> dict:
    """The facts of a card for a run that ``trainer`` (set up, not run) describes."""
    config = trainer.config
    return {
        "format": CARD_FORMAT, "version": 1, "meleewm": __version__, "name": config.name,
        "out_dir": str(out_dir), "created": _now(), "status": status, "host": socket.gethostname(),
        "goal": config.card.goal, "targets": dict(config.card.targets), "hourly_cost": config.card.hourly_cost,
        "config": config_to_dict(config), "config_hash": config_hash(config),
        "commands": commands(config_path, data, out_dir, overrides),
        "dataset": dataset_facts(trainer.dataset, data), "split": split_facts(trainer),
        "model": model_facts(trainer.model), "encoding": encoding_facts(trainer.model, config.loss),
        "training": training_facts(trainer), "kill": kill_lines(config),
        "estimate": None, "baseline": None, "sessions": [], "results": None,
    }


# ---------------------------------------------------------------------------------------------------------------
# Time: the probe and the estimate


def probe(trainer, steps: int = PROBE_STEPS) -> tuple[dict, dict]:
    """(baseline metrics, timings): one validation of the untrained model, then 1 + ``steps`` training steps.

    Changes the trainer's model and optimizer: use a throwaway trainer (``plan`` does)."""
    from torch.utils.data import default_collate

    started = time.perf_counter()
    baseline = trainer.validate()
    val_seconds = time.perf_counter() - started
    batches = trainer._epoch_batches(0)
    times = []
    for indices in batches[:steps + 1]:
        batch = default_collate([trainer.train_windows[i] for i in indices])
        t0 = time.perf_counter()
        trainer.train_step(batch)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    measured = times[1:] or times
    return baseline, {"seconds_per_batch": sum(measured) / len(measured), "val_seconds": val_seconds,
                      "probe_steps": len(measured), "first_step_seconds": times[0] if times else None}


def estimate(facts: dict, *, seconds_per_batch: float, val_seconds: float | None, source: str,
             setup_seconds: float | None = None) -> dict:
    training = facts["training"]
    steps, validations = training["total_steps"], training["validations"]
    train_s = steps * seconds_per_batch
    val_s = validations * val_seconds if val_seconds is not None else None
    total = train_s + (val_s or 0.0) + (setup_seconds or 0.0)
    out = {"source": source, "device": training["device"], "host": facts.get("host"),
           "batches_per_epoch": training["steps_per_epoch"], "total_steps": steps, "validations": validations,
           "seconds_per_batch": seconds_per_batch, "val_seconds": val_seconds, "setup_seconds": setup_seconds,
           "train_seconds": train_s, "total_seconds": total, "hourly_cost": facts.get("hourly_cost") or 0.0}
    if out["hourly_cost"]:
        out["cost"] = total / 3600 * out["hourly_cost"]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Writing


def write_card(out_dir: str | Path, facts: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prior = prior_runs(out_dir, facts)
    for name, text in ((CARD_JSON, json.dumps(facts, indent=1, default=str)), (CARD_MD, render(facts, prior))):
        write_text_atomic(out_dir / name, text)
    return out_dir / CARD_MD


def read_card(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / CARD_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def plan(data, config: TrainConfig, out_dir, *, config_path=None, overrides=(), probe_steps: int = PROBE_STEPS,
         progress: bool = False) -> dict:
    """Set up a run without training it: the card's facts, a measured estimate, ``card.md`` written."""
    from meleewm.train.trainer import Trainer

    existing = read_card(out_dir)
    if existing and existing.get("status") not in (None, "planned"):
        raise CardError(f"{out_dir} holds a run (status {existing['status']}); plan into another --out")
    if not existing and (Path(out_dir) / "last.pt").exists():
        raise CardError(f"{out_dir} holds a run (it has a last.pt); plan into another --out")
    started = time.perf_counter()
    trainer = Trainer(data, config, out_dir, progress=progress)
    setup = time.perf_counter() - started
    facts = collect(trainer, data=data, out_dir=out_dir, config_path=config_path, overrides=overrides)
    if probe_steps > 0:
        baseline, timing = probe(trainer, probe_steps)
        facts["baseline"] = baseline
        facts["estimate"] = estimate(facts, seconds_per_batch=timing["seconds_per_batch"],
                                     val_seconds=timing["val_seconds"], setup_seconds=setup,
                                     source=f"probe of {timing['probe_steps']} training steps after 1 warm-up "
                                            f"step, and 1 validation")
    else:
        facts["estimate"] = None
    write_card(out_dir, facts)
    return facts


class CardError(MeleewmError):
    """A card that cannot be written where asked (a folder that holds another run)."""


class CardRecorder:
    """Keeps the card of a training run: written at launch, timed over the first steps, results at the end.

    Pass ``on_step`` and ``on_epoch`` to the Trainer; call :meth:`launch` before ``run()`` and :meth:`finish`
    (or :meth:`fail`) after. Does nothing on ranks other than 0.
    """

    def __init__(self, out_dir, *, data, config_path=None, overrides=()):
        self.out_dir, self.data = Path(out_dir), data
        self.config_path, self.overrides = config_path, list(overrides or [])
        self.heartbeat = Heartbeat(self.out_dir)
        self.started = time.perf_counter()
        self.facts: dict | None = None
        self.active = True
        self.step_times: list[float] = []
        self.last_step_at: float | None = None
        self.measured_estimate = False
        self.train_started: float | None = None

    def launch(self, trainer, *, measure_baseline: bool = True) -> Path | None:
        self.active = trainer.is_main
        if not self.active:
            return None
        owner = live_owner(self.out_dir)
        if owner:
            raise CardError(f"{self.out_dir} is in use: process {owner['pid']} on {owner['host']} trains there")
        old = read_card(self.out_dir)
        facts = collect(trainer, data=self.data, out_dir=self.out_dir, config_path=self.config_path,
                        overrides=self.overrides, status="running")
        same = bool(old) and old.get("config_hash") == facts["config_hash"] and \
            old.get("dataset", {}).get("hash") == facts["dataset"]["hash"]
        if same:  # a plan card of this run, or the card of the run being resumed: keep its estimate and baseline
            facts["estimate"], facts["baseline"] = old.get("estimate"), old.get("baseline")
            if trainer.resumed:
                facts["created"], facts["sessions"] = old.get("created", facts["created"]), old.get("sessions", [])
        setup = time.perf_counter() - self.started
        self.heartbeat.start()  # from here until finish() or fail(), `meleewm runs` sees the process alive
        if facts["baseline"] is None and measure_baseline and not trainer.resumed:
            facts["baseline"] = trainer.validate()
        self.measured_estimate = facts["estimate"] is None
        self.setup_seconds = setup
        facts["sessions"].append({"started": _now(), "resumed_at_step": trainer.step})
        self.facts = facts
        self.train_started = time.perf_counter()
        return write_card(self.out_dir, facts)

    # Trainer callbacks
    def on_step(self, trainer, values: dict) -> None:
        if not self.active or self.facts is None:
            return
        now = time.perf_counter()
        self.step_times.append(now)
        self.last_step_at = now
        if self.measured_estimate and len(self.step_times) == PROBE_STEPS + 1:
            spb = (self.step_times[-1] - self.step_times[0]) / PROBE_STEPS
            self.facts["estimate"] = estimate(self.facts, seconds_per_batch=spb, val_seconds=None,
                                              setup_seconds=self.setup_seconds,
                                              source=f"steps 2-{PROBE_STEPS + 1} of this run (validation not yet "
                                                     f"timed)")
            write_card(self.out_dir, self.facts)

    def on_epoch(self, trainer, metrics: dict) -> None:
        if not self.active or self.facts is None or self.last_step_at is None:
            return
        est = self.facts.get("estimate")
        if self.measured_estimate and est and est["val_seconds"] is None:
            val = time.perf_counter() - self.last_step_at
            self.facts["estimate"] = estimate(self.facts, seconds_per_batch=est["seconds_per_batch"],
                                              val_seconds=val, setup_seconds=self.setup_seconds,
                                              source=f"steps 2-{PROBE_STEPS + 1} and the first validation of "
                                                     f"this run")
            write_card(self.out_dir, self.facts)

    def _seconds_per_batch(self) -> float | None:
        times = self.step_times[1:]
        if len(times) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        return gaps[len(gaps) // 2]  # the median step: validations between epochs do not count

    def finish(self, result, *, evaluation=None, eval_error: str | None = None,
               eval_dir: str | Path | None = None, eval_seconds: float | None = None) -> Path | None:
        """Add the results section: metrics against the targets, the eval tables, time and cost."""
        if not self.active or self.facts is None:
            return None
        f = self.facts
        reason = result.stop_reason
        status = ("finished" if reason == "finished" or reason.startswith("max_steps") else
                  "killed" if reason.startswith("kill:") else
                  "interrupted" if reason.startswith("interrupted") else "stopped")
        history = result.history or []
        last = history[-1] if history else {}
        rows = []
        for metric in dict.fromkeys([*f["targets"], *KEY_METRICS]):
            target = f["targets"].get(metric)
            final, best = last.get(metric), best_of(history, metric, target)
            rows.append({"metric": metric, "target": target, "final": final, "best": best,
                         "final_met": target_met(final, target) if target else None,
                         "best_met": target_met(best, target) if target else None})
        out = self.out_dir
        links = {"metrics": str(out / "metrics.jsonl"), "checkpoints": f"{out / 'best.pt'}, {out / 'last.pt'}"}
        if f["config"]["log"]["tensorboard"]:
            links["TensorBoard"] = f"{out / 'tensorboard'} (tensorboard --logdir {out / 'tensorboard'})"
        ev: dict = {}
        if evaluation is not None:   # a meleewm.eval.report.EvalResult
            summary_table, horizon_table = eval_tables(evaluation.metrics)
            meta = evaluation.meta
            ev = {"starts": meta.get("starts"), "games": meta.get("games"), "warmup": meta.get("warmup"),
                  "horizon": meta.get("horizon"), "report": str(Path(eval_dir) / "report.html"),
                  "metrics": str(Path(eval_dir) / "metrics.json"), "summary_table": summary_table,
                  "horizon_table": horizon_table}
            links["eval report"] = ev["report"]
        else:
            ev = {"error": eval_error or "no evaluation was asked for"}
        wall = time.perf_counter() - self.started
        f["status"] = status
        f["results"] = {
            "stop_reason": reason, "ended": _now(), "steps": result.steps, "epochs": result.epochs_done,
            "wall_seconds": wall, "train_seconds": result.elapsed, "eval_seconds": eval_seconds,
            "seconds_per_batch": self._seconds_per_batch(), "metrics": rows, "eval": ev,
            "eval_summary": eval_summary(evaluation.metrics) if evaluation else {}, "links": links,
            "best_metric": result.best_metric,
        }
        if f.get("hourly_cost"):
            f["results"]["cost"] = wall / 3600 * f["hourly_cost"]
        path = write_card(self.out_dir, f)
        self.heartbeat.stop()
        return path

    def fail(self, error: BaseException) -> None:
        """Record a run that ended by an exception (the card keeps no results)."""
        if not self.active or self.facts is None:
            return
        if isinstance(error, KeyboardInterrupt):
            self.facts["status"] = "interrupted (aborted by a second Ctrl-C: no last.pt of the last steps)"
        else:
            self.facts["status"] = f"failed: {type(error).__name__}: {error}"[:300]
        write_card(self.out_dir, self.facts)
        self.heartbeat.stop()
