"""``meleewm train``: windows of T frames with a loss at every position, self-forcing, AdamW with warmup and
cosine decay, per-epoch validation (the best checkpoint is chosen by the rollout metric), exact resume, and
DDP through torchrun (rank 0 logs and writes checkpoints).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from functools import partial
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from meleewm.config import ConfigError
from meleewm.data.cache import build_cache, fitted_spec
from meleewm.data.config import run_split
from meleewm.data.step import StepInput
from meleewm.data.store import ShardStream, StoreError, build_store
from meleewm.data.encoding import EncodingSpec
from meleewm.data.windows import WindowDataset
from meleewm.errors import MeleewmError
from meleewm.model.checkpoint import CheckpointError, checkpoint_spec, read_checkpoint
from meleewm.model.losses import head_losses, total_loss
from meleewm.model.measures import teacher_forced_metrics
from meleewm.model.rollout import rollout_starts, to_device
from meleewm.model.world import WorldModel, next_inputs
from meleewm.replay.dataset import Dataset
from meleewm.train.checkpoint import (
    copy_checkpoint,
    load_matching_weights,
    remove_partial_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from meleewm.train.config import TrainConfig, config_to_dict
from meleewm.train.kill import KillSwitch
from meleewm.train.validation import rollout_metric


class TrainError(MeleewmError):
    """A training run that cannot start: no data, a bad resume, an incompatible checkpoint."""


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    epochs_done: int
    stop_reason: str
    best_metric: float | None
    last_metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    num_params: int = 0


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun; (0, 1, False) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size(), started) if world > 1 else (0, 1, False)


def _device(config: TrainConfig, rank: int) -> torch.device:
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA device is available")
    return torch.device("cuda", rank % torch.cuda.device_count())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, embeddings and the SSM's dt/A/D parameters; frozen parameters
    (``optim.train_only``) are not optimised."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = (param.dim() < 2 or getattr(param, "_no_weight_decay", False) or "embedding" in name)
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(optim_config, total_steps: int):
    warmup, floor = optim_config.warmup_steps, optim_config.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def cont_delta_scale(cache, max_frames: int = 500_000) -> torch.Tensor:
    """Per continuous field, the RMS of its change from one frame to the next (normalised units), over up to
    ``max_frames`` frames of the cache; the scale of the world model's continuous head and loss."""
    total, count = None, None
    for game in range(len(cache)):
        length = int(cache.lengths[game])
        frames = cache.window(game, 0, length, names=("cont", "cont_mask"))
        cont, mask = np.asarray(frames["cont"], np.float64), frames["cont_mask"]
        valid = mask[1:] & mask[:-1]
        delta = np.where(valid, np.diff(cont, axis=0), 0.0)
        sums, counts = np.square(delta).sum(axis=(0, 1)), valid.sum(axis=(0, 1))
        total = sums if total is None else total + sums
        count = counts if count is None else count + counts
        max_frames -= length
        if max_frames <= 0:
            break
    rms = np.sqrt(total / np.maximum(count, 1))
    return torch.tensor(np.where(count > 0, np.maximum(rms, 1e-3), 1.0), dtype=torch.float32)


def _resumable(path: Path) -> dict:
    """A checkpoint that holds everything a resume restores (an exported model does not)."""
    payload = read_checkpoint(path)
    missing = [key for key in ("optimizer", "scheduler", "rng") if not isinstance(payload.get(key), dict)]
    missing += [f"position.{key}" for key in ("step", "epoch", "batch_in_epoch") if key not in payload["position"]]
    if missing:
        raise CheckpointError(f"--resume: {path} has no {', '.join(missing)} (an exported model?): it cannot be "
                              f"resumed")
    return payload


def _self_forced(model, inputs: StepInput, unroll: int, player_items_only: bool = False) -> StepInput:
    """Replace the state inputs by the model's own predictions, ``unroll`` times (parallel over positions).

    Position t's prediction is frame t+1's state, so pass k feeds predictions of pass k-1 shifted by one frame;
    the first position keeps its true state. Predictions enter detached, as they would in a rollout.
    ``player_items_only`` is the encoding's option, passed in: a DDP wrapper has no spec to read it from.
    """
    x = inputs
    for _ in range(unroll):
        with torch.no_grad():
            pred = model(x)
        own = next_inputs(pred, x, player_items_only=player_items_only).state()
        x = x.replace(**{k: torch.cat([getattr(inputs, k)[:, :1], v[:, :-1]], dim=1) for k, v in own.items()})
    return x


def _noisy(inputs: StepInput, std: torch.Tensor, generator: torch.Generator) -> StepInput:
    """The inputs with Gaussian noise of ``std`` (per continuous field) on the present continuous state entries;
    the targets stay true, so the model learns to pull a perturbed state back (as in GNS simulators)."""
    cont = inputs.state_cont
    noise = torch.randn(cont.shape, generator=generator, device=generator.device) * std.to(cont.device)
    return inputs.replace(state_cont=cont + noise.to(cont.dtype) * inputs.cont_mask)


class Trainer:
    def __init__(self, data: str | Path, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 progress: bool = True, on_epoch=None, on_step=None):
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.on_epoch, self.on_step = on_epoch, on_step  # callbacks (trainer, values): run cards use them
        self.rank, self.world, self._owns_process_group = _distributed()
        self.device = _device(config, self.rank)
        self.is_main = self.rank == 0
        if config.data.batch_size % self.world:
            raise ConfigError(f"data.batch_size ({config.data.batch_size}) must divide evenly over "
                              f"{self.world} processes")
        self.resume_payload = None
        self.fresh_start: str | None = None  # why a --resume started from step 0 (said by the CLI)
        if resume:
            last = self.out_dir / "last.pt"
            if last.is_file():
                self.resume_payload = _resumable(last)
            else:
                self.fresh_start = (f"--resume: {self.out_dir} has no last.pt (the run stopped before its first "
                                    f"checkpoint): starting fresh")
        _seed_everything(config.seed)
        self._setup_data(Path(data))
        self.kill = KillSwitch(config.kill, self.steps_per_epoch, self.world, self.device)
        self._setup_model()

    @property
    def resumed(self) -> bool:
        """Whether this run continues from a checkpoint (a --resume with no last.pt starts fresh)."""
        return self.resume_payload is not None

    # -- setup --------------------------------------------------------------------------------------------------

    def _setup_data(self, data: Path) -> None:
        config = self.config
        self.dataset = Dataset(data)
        train_ids, val_ids = run_split(self.dataset, config.data)
        if not train_ids:
            raise TrainError(f"{data}: no training games (it has {len(self.dataset.games)} games; filters "
                             f"{', '.join(config.data.filters())} leave none for training)")
        self.train_ids, self.val_ids = train_ids, val_ids
        # Rank 0 fits the spec (saving it) and encodes the caches (or stores); the others wait and open them.
        build = build_cache
        if config.data.store == "sharded":
            build = partial(build_store, workers=config.data.store_workers)
        if self.is_main:
            self.spec = self._encoding_spec()
            self.train_cache = build(self.dataset, self.spec, train_ids, progress=self.progress)
            self.val_cache = build(self.dataset, self.spec, val_ids, progress=self.progress)
        if self.world > 1:
            dist.barrier()
        if not self.is_main:
            self.spec = self._encoding_spec()
            self.train_cache = build(self.dataset, self.spec, train_ids, progress=False)
            self.val_cache = build(self.dataset, self.spec, val_ids, progress=False)
        T = config.data.seq_len
        self.train_windows = WindowDataset(self.train_cache, T, seed=config.seed, swap=config.data.swap_players,
                                           mirror=config.data.mirror, random_phase=True,
                                           ko_windows=config.data.ko_windows)
        self.val_windows = WindowDataset(self.val_cache, T, seed=config.eval.seed, random_phase=False)
        if len(self.train_windows) < config.data.batch_size:
            raise TrainError(f"{data}: {len(self.train_windows)} training windows of {T} frames, fewer than one "
                             f"batch of {config.data.batch_size}: lower data.seq_len or data.batch_size")
        length = config.eval.warmup + config.eval.rollout_horizon
        self.starts = rollout_starts(self.val_windows, config.eval.rollout_starts, length, config.eval.seed)
        batches = len(self.train_windows) // config.data.batch_size
        self.train_stream = None  # the sharded store's training stream; the cache path samples train_windows
        if config.data.store == "sharded":
            try:
                self.train_stream = ShardStream(self.train_cache, T, config.data.batch_size // self.world,
                                                seed=config.seed, rank=self.rank, world=self.world,
                                                swap=config.data.swap_players, mirror=config.data.mirror,
                                                ko_windows=config.data.ko_windows,
                                                prefetch_shards=config.data.prefetch_shards)
            except StoreError as error:
                raise TrainError(str(error)) from None
            batches = self.train_stream.steps_per_epoch
            if config.optim.steps_per_epoch > batches:
                raise TrainError(f"optim.steps_per_epoch ({config.optim.steps_per_epoch}) is more than the {batches} "
                                 f"batches each rank's shards give an epoch (data.store=sharded)")
        self.steps_per_epoch = config.optim.steps_per_epoch or batches
        self.total_steps = self.steps_per_epoch * config.optim.epochs

    def _encoding_spec(self) -> EncodingSpec:
        """The checkpoint's spec on a resume; else the spec fitted on the training games, by the first call on
        them (rank 0, or an earlier run or plan) in data.store_workers processes, and read back by later ones."""
        if self.resume_payload is not None:
            return checkpoint_spec(self.out_dir / "last.pt", self.resume_payload)
        data = self.config.data
        spec = fitted_spec(self.dataset, self.train_ids, items=data.items, item_slots=data.item_slots,
                           workers=data.store_workers)
        # which rows encode and how the age input counts, not their statistics: no refit
        spec.player_items_only, spec.age_by_rule = data.player_items_only, data.age_by_rule
        return spec

    def _setup_model(self) -> None:
        config = self.config
        self.model = WorldModel(self.spec, config.model)
        self.model.cont_delta_scale.copy_(cont_delta_scale(self.train_cache))
        if config.init_from and self.resume_payload is None:
            load_matching_weights(self.model, config.init_from)
        if config.optim.train_only:
            prefixes = tuple(p.strip() for p in config.optim.train_only.split(","))
            for name, param in self.model.named_parameters():
                param.requires_grad_(name.startswith(prefixes))
            if not any(param.requires_grad for param in self.model.parameters()):
                tops = sorted({name.split(".")[0] for name, _ in self.model.named_parameters()})
                raise ConfigError(f"optim.train_only: {config.optim.train_only!r} names no parameter of the model; "
                                  f"its parameters start with {', '.join(tops)}")
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, config.optim.weight_decay), lr=config.optim.lr,
                                           betas=config.optim.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config.optim, self.total_steps))
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_metric: float | None = None
        self.history: list[dict] = []
        if self.resume_payload is not None:
            payload = self.resume_payload
            try:
                self.model.load_state_dict(payload["model"])
            except RuntimeError as error:  # another model config, or an encoding edited out of step with it
                raise CheckpointError(f"--resume: the weights of {self.out_dir / 'last.pt'} do not fit the model "
                                      f"that this config and the checkpoint's encoding describe: {error}") from None
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            position = payload["position"]
            self.step, self.epoch = position["step"], position["epoch"]
            self.batch_in_epoch = position["batch_in_epoch"]
            self.best_metric = position.get("best_metric")
            self.history = position.get("history", [])
            set_rng_state(payload["rng"])
        self.train_model = self.model
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if config.compile:
            self.train_model = torch.compile(self.train_model)

    # -- running ------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's share of each global batch of the epoch, in a (seed, epoch)-determined order."""
        self.train_windows.set_epoch(epoch)
        order = torch.randperm(len(self.train_windows), generator=torch.Generator().manual_seed(
            self.config.seed * 100_003 + epoch)).tolist()
        size, share = self.config.data.batch_size, self.config.data.batch_size // self.world
        batches = []
        for b in range(self.steps_per_epoch):
            chunk = [order[(b * size + j) % len(order)] for j in range(size)]
            batches.append(chunk[self.rank * share:(self.rank + 1) * share])
        return batches

    def _unroll_for(self) -> int:
        """Self-forcing passes for this step: 0 (teacher forcing) or the curriculum's 1..max_unroll."""
        sf = self.config.self_forcing
        if not sf.enabled or self.epoch < sf.start_epoch or sf.max_unroll < 1:
            return 0
        draw = torch.rand(1, generator=torch.Generator().manual_seed(self.config.seed * 7919 + self.step)).item()
        if draw >= sf.prob:
            return 0
        progress = self.step / max(1, self.total_steps)
        return min(sf.max_unroll, 1 + int(progress * sf.max_unroll))

    def train_step(self, batch: dict) -> dict[str, float]:
        self.train_model.train()
        batch = to_device(batch, self.device)
        unroll = self._unroll_for()
        with self._autocast():
            inputs = StepInput.from_window(batch)
            if unroll:
                inputs = _self_forced(self.train_model, inputs, unroll, self.spec.player_items_only)
            if self.config.self_forcing.input_noise:
                # seeded by step and rank, so a resumed run draws the same noise
                noise_seed = (self.config.seed * 104_729 + self.step) * self.world + self.rank
                inputs = _noisy(inputs, self.config.self_forcing.input_noise * self.model.cont_delta_scale,
                                torch.Generator(self.device).manual_seed(noise_seed))
            pred = self.train_model(inputs)
        losses = head_losses(pred, batch, self.model.cat_names, self.config.loss, self.model.cont_delta_scale,
                             self.model.cont_zero, self.model.dead_action)
        loss = total_loss(losses, self.config.loss)
        if self.kill.nonfinite(loss):  # NaN/inf here or on any rank: no update; run() stops with the reason
            return {"loss": loss.item(), "nonfinite": 1.0}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": loss.item(), "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0],
                "self_forcing_unroll": unroll, **{f"loss/{k}": v.item() for k, v in losses.items()}}

    def validate(self) -> dict[str, float]:
        config = self.config
        metrics = teacher_forced_metrics(self.model, self.val_windows, batch_size=config.data.batch_size,
                                         max_batches=config.eval.max_val_batches, device=self.device,
                                         loss_config=config.loss, autocast=self._autocast)
        metrics.update(rollout_metric(self.model, self.val_windows, self.starts, warmup=config.eval.warmup,
                                      horizon=config.eval.rollout_horizon, device=self.device))
        return metrics

    def _position(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_metric": self.best_metric, "history": self.history}

    def save(self, name: str, metrics: dict | None = None) -> Path | None:
        if not self.is_main:
            return None
        return save_checkpoint(self.out_dir / name, model=self.model, config=self.config, optimizer=self.optimizer,
                               scheduler=self.scheduler, position=self._position(), metrics=metrics)

    def run(self) -> TrainResult:
        from meleewm.train.logging import RunLogger

        config, started = self.config, time.perf_counter()
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_partial_checkpoints(self.out_dir)  # left by a process killed while it saved
            (self.out_dir / "config.yaml").write_text(_yaml(config_to_dict(config)))
        logger = RunLogger(self.out_dir, config, enabled=self.is_main, progress=self.progress,
                           total_steps=min(self.total_steps, config.optim.max_steps or self.total_steps),
                           initial_step=self.step)
        stop_reason, last_metrics = "finished", {}
        self.kill.install_signal_handlers()  # SIGINT/SIGTERM: stop after this step, save last.pt
        try:
            while self.epoch < config.optim.epochs:
                # One loader per epoch over this rank's batches, resuming mid-epoch where the checkpoint left off.
                if self.train_stream is not None:
                    loader = self.train_stream.batches(self.epoch, self.batch_in_epoch, self.steps_per_epoch)
                else:
                    remaining = self._epoch_batches(self.epoch)[self.batch_in_epoch:]
                    loader = DataLoader(self.train_windows, batch_sampler=remaining,
                                        num_workers=config.data.num_workers)
                for batch in loader:
                    values = self.train_step(batch)
                    self.batch_in_epoch += 1
                    logger.train(self.step, self.epoch, values)
                    if self.on_step:
                        self.on_step(self, values)
                    reason = self.kill.after_step(self.step, self.epoch, self.batch_in_epoch, values)
                    if reason:
                        stop_reason = reason
                        break
                    if config.optim.max_steps and self.step >= config.optim.max_steps:
                        stop_reason = f"max_steps ({config.optim.max_steps}) reached"
                        break
                if stop_reason != "finished":
                    break
                last_metrics = self._end_epoch(logger)
                reason = self.kill.after_epoch(self.epoch, last_metrics)
                if reason:
                    stop_reason = reason
                    break
            if stop_reason != "finished":
                self.save("last.pt", last_metrics)
        finally:
            self.kill.restore_signal_handlers()
            logger.close()
        if self.world > 1:
            dist.barrier()
        if self._owns_process_group:
            # A process that exits with Gloo's threads still up can abort at interpreter exit ("terminate called
            # without an active exception"): seen once in CI on rank 1 of the torchrun test, after a finished run.
            dist.destroy_process_group()
        return TrainResult(self.out_dir, self.step, self.epoch, stop_reason, self.best_metric, last_metrics,
                           self.history, time.perf_counter() - started, self.model.num_params())

    def _end_epoch(self, logger) -> dict:
        metrics, improved = {}, False
        if self.is_main:
            metrics = self.validate()
            metric = metrics["rollout_position_error"]
            # NaN (no validation game long enough for a rollout) never blocks a later real value.
            improved = (self.best_metric is None or math.isnan(self.best_metric)
                        or (not math.isnan(metric) and metric < self.best_metric))
            if improved:
                self.best_metric = metric
            self.history.append({"epoch": self.epoch, "step": self.step, **metrics})
            logger.validation(self.step, self.epoch, metrics, best=improved)
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.is_main:
            self.save("last.pt", metrics)
            if improved:  # the checkpoint just written, under a second name
                copy_checkpoint(self.out_dir / "last.pt", self.out_dir / "best.pt")
        if self.on_epoch:
            self.on_epoch(self, metrics)
        if self.world > 1:
            dist.barrier()
        return metrics


def _yaml(values: dict) -> str:
    import yaml
    return yaml.safe_dump(json.loads(json.dumps(values)), sort_keys=False)


def train(data: str | Path, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> TrainResult:
    return Trainer(data, config, out_dir, resume=resume, progress=progress).run()

