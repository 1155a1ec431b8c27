"""The run listing (``meleewm runs``) and a card's prior comparable runs: one row per run folder, read from its
card where there is one, else from its config, metrics log and checkpoint."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path

import yaml

from meleewm.model.checkpoint import CheckpointError, read_checkpoint
from meleewm.train.card_common import CARD_JSON, KEY_METRICS
from meleewm.train.liveness import dead_reason


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written
    return records


def _checkpoint_facts(run: Path) -> dict:
    """Parameters and encoding hash of a run without a card, from its checkpoint; ``error`` says why a checkpoint
    could not be read (a refused or broken file is reported, never loaded beyond plain data)."""
    for name in ("last.pt", "best.pt"):
        path = run / name
        if path.is_file():
            try:
                payload = read_checkpoint(path)
            except CheckpointError as error:
                return {"error": str(error)}
            encoding = payload["encoding"]
            return {"params": payload.get("num_params"),
                    "encoding_hash": hashlib.sha256(json.dumps(encoding, sort_keys=True).encode())
                    .hexdigest()[:16] if encoding else None,
                    "step": payload["position"].get("step")}
    return {}


def read_run(run: str | Path) -> dict | None:
    """One row about a run folder: from card.json where there is one, else config.yaml, metrics.jsonl and the
    checkpoint. None for a folder that is no run."""
    run = Path(run)
    card = None
    if (run / CARD_JSON).is_file():
        try:
            card = json.loads((run / CARD_JSON).read_text())
        except json.JSONDecodeError:
            card = None
    if card is None and not (run / "config.yaml").is_file():
        return None
    records = _read_jsonl(run / "metrics.jsonl")
    history = [r for r in records if r.get("kind") == "val"]
    steps = max((r.get("step", 0) for r in records), default=0)
    # The metrics of the epoch best.pt holds (the best rollout metric), else of the last epoch.
    flagged = [r for r in history if r.get("best")]
    chosen = flagged[-1] if flagged else (history[-1] if history else {})
    row = {"run": run.name, "path": str(run), "metrics": {k: chosen.get(k) for k in KEY_METRICS if k in chosen},
           "epochs": len(history), "steps": steps}
    if card is not None:
        results = card.get("results") or {}
        row.update(name=card.get("name"), date=card.get("created"), status=card.get("status"),
                   params=card["model"]["params"], dataset=card["dataset"]["path"],
                   dataset_hash=card["dataset"]["hash"], encoding_hash=card["encoding"]["hash"],
                   train_games=card["split"]["train"]["games"], stop_reason=results.get("stop_reason"),
                   wall_seconds=results.get("wall_seconds"), has_card=True)
        dead = dead_reason(run) if card.get("status") == "running" else None
        if dead:  # the card of a run whose process was killed before it could say so
            row["status"] = f"dead ({dead})"
        elif row["wall_seconds"] is None and card.get("status") == "running":
            try:
                started = _dt.datetime.fromisoformat(card["sessions"][-1]["started"])
                row["wall_seconds"] = (_dt.datetime.now().astimezone() - started).total_seconds()
            except (KeyError, IndexError, ValueError):
                pass
        if results.get("eval_summary"):
            row["metrics"].update(results["eval_summary"])
    else:
        try:
            config = yaml.safe_load((run / "config.yaml").read_text()) or {}
        except yaml.YAMLError:
            config = {}
        facts = _checkpoint_facts(run)
        config_file, log = run / "config.yaml", run / "metrics.jsonl"
        wall = (log.stat().st_mtime - config_file.stat().st_mtime) if log.is_file() else None
        row.update(name=config.get("name", run.name),
                   date=_dt.datetime.fromtimestamp(config_file.stat().st_mtime).astimezone().isoformat(
                       timespec="seconds"),
                   status="no card" if "error" not in facts else "no card, checkpoint unreadable",
                   params=facts.get("params"), dataset=None, dataset_hash=None,
                   encoding_hash=facts.get("encoding_hash"), train_games=None, stop_reason=None,
                   wall_seconds=wall, has_card=False, checkpoint_error=facts.get("error"))
    if (run / "eval" / "metrics.json").is_file() and not any(k.startswith("eval_") for k in row["metrics"]):
        try:
            row["metrics"].update(eval_summary(json.loads((run / "eval" / "metrics.json").read_text())))
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    return row


def list_runs(root: str | Path = "runs", sort: str | None = None, descending: bool = False) -> list[dict]:
    """All runs under ``root`` (its sub-folders), sorted by date or by a metric / column (missing values last)."""
    root = Path(root)
    rows = [r for r in (read_run(p) for p in sorted(root.iterdir()) if p.is_dir()) if r] if root.is_dir() else []
    key = sort or "date"

    def value(row):
        v = row["metrics"].get(key, row.get(key))
        return v if v is not None and not (isinstance(v, float) and math.isnan(v)) else None

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    present.sort(key=value, reverse=descending)
    return present + missing


def eval_summary(metrics: dict, k: int = 20) -> dict:
    """The model's rollout summary (mean over steps 1..k) of an eval metrics dict, as flat row metrics."""
    rows = {r["k"]: r for r in (metrics.get("summary") or {}).get("model", [])}
    if not rows:
        return {}
    k = k if k in rows else max(rows)
    return {f"eval_pos@{k}": rows[k].get("position_error"), f"eval_act@{k}": rows[k].get("action_accuracy")}


def prior_runs(out_dir: str | Path, facts: dict) -> list[dict]:
    """Sibling runs that share the dataset (path or games) or the encoding with this card."""
    out_dir = Path(out_dir).resolve()
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    rows = []
    for path in sorted(parent.iterdir()):
        if not path.is_dir() or path.resolve() == out_dir:
            continue
        row = read_run(path)
        if row is None:
            continue
        shares = []
        if row.get("dataset_hash") and row["dataset_hash"] == facts["dataset"]["hash"]:
            shares.append("same games")
        elif row.get("dataset") and row["dataset"] == facts["dataset"]["path"]:
            shares.append("same dataset folder")
        if row.get("encoding_hash") and row["encoding_hash"] == facts["encoding"]["hash"]:
            shares.append("same encoding")
        if shares:
            rows.append({**row, "shares": ", ".join(shares)})
    return rows
