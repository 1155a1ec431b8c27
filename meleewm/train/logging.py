"""Where a run's numbers go: ``metrics.jsonl`` always, TensorBoard by default, Weights & Biases when asked for
(offline unless configured), and a progress bar. Only rank 0 writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from meleewm.atomic import write_text_atomic
from meleewm.train.config import TrainConfig, config_to_dict


def _clean(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def _drop_records_after(path: Path, step: int) -> None:
    """Keep only the records of steps up to ``step`` (the checkpoint a run resumes from; 0 for a fresh start):
    a killed run logged steps after its last checkpoint, and the resumed run logs them again."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record_step = json.loads(line).get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by the kill
        if isinstance(record_step, int) and record_step <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        write_text_atomic(path, "".join(kept))


class RunLogger:
    def __init__(self, out_dir: Path, config: TrainConfig, *, enabled: bool, progress: bool, total_steps: int,
                 initial_step: int = 0):
        self.enabled, self.every = enabled, max(1, config.log.every_steps)
        self.console = Console()
        self.jsonl = self.tensorboard = self.wandb = self.bar = None
        if not enabled:
            return
        _drop_records_after(out_dir / "metrics.jsonl", initial_step)
        self.jsonl = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        if config.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # Events of steps this run makes again (written after the checkpoint it resumes from) are dropped.
            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=initial_step + 1)
        if config.log.wandb:
            try:
                import wandb
            except ImportError:
                self.console.print("[yellow]log.wandb is set but wandb is not installed: skipping it[/]")
            else:
                self.wandb = wandb.init(project=config.log.wandb_project, name=config.name, dir=str(out_dir),
                                        mode=config.log.wandb_mode, config=config_to_dict(config))
        if progress:
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=self.console)
            self.task = self.bar.add_task("train", total=total_steps, completed=initial_step, status="")
            self.bar.start()

    def _write(self, record: dict) -> None:
        self.jsonl.write(json.dumps(_clean(record)) + "\n")
        self.jsonl.flush()

    def train(self, step: int, epoch: int, values: dict) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=step, status=f"epoch {epoch}  loss {values['loss']:.4f}")
        if step % self.every == 0 or step == 1:
            self._write({"kind": "train", "step": step, "epoch": epoch, **values})
            if self.tensorboard is not None:
                for name, value in values.items():
                    self.tensorboard.add_scalar(f"train/{name}", value, step)
            if self.wandb is not None:
                self.wandb.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def validation(self, step: int, epoch: int, metrics: dict, *, best: bool) -> None:
        if not self.enabled:
            return
        self._write({"kind": "val", "step": step, "epoch": epoch, "best": best, **metrics})
        if self.tensorboard is not None:
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"val/{name}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"val/{k}": v for k, v in metrics.items()}, step=step)
        line = (f"epoch {epoch}: rollout position error {metrics['rollout_position_error']:.2f}, "
                f"change_acc {metrics['change_acc']:.3f}, action_acc {metrics['action_acc']:.3f}, "
                f"position error {metrics['position_error']:.2f}{'  (best)' if best else ''}")
        if self.bar is not None:
            self.bar.console.print(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
