"""Kill thresholds of a training run (the ``kill`` config section) and clean stops on SIGINT/SIGTERM.

The trainer asks :class:`KillSwitch` after every step and at the end of every epoch; the first threshold that
fires gives the run's stop reason, which names it exactly ("kill: ..."). Three kinds:

* ``nonfinite_loss``: a NaN or infinite training loss. The trainer skips that update (the weights stay finite,
  so the saved last.pt is usable) and stops.
* ``no_decrease_fraction`` (0 = off): at that fraction of the first epoch, the mean training loss of the last
  ``smoothing`` steps must be below the mean of the first ``smoothing`` steps times ``1 - min_decrease``.
  ``smoothing`` 0 means a quarter of the steps up to the check. Checked once; not after a resume past it.
* ``min`` / ``max``: bounds on validation metrics, checked at the end of every epoch once ``after_epoch``
  epochs are complete (1 = from the end of the first). A NaN metric (no rollout possible) never fires.

Under DDP every decision is made identically on all ranks (flags are all-reduced; rank 0's metric and loss
decisions are broadcast), so all processes stop at the same step.
"""

from __future__ import annotations

import math
import signal
import threading

import torch
import torch.distributed as dist

from meleewm.train.config import KillConfig


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class KillSwitch:
    def __init__(self, config: KillConfig, steps_per_epoch: int, world: int = 1, device=None):
        self.config, self.world = config, world
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.steps_per_epoch = max(1, steps_per_epoch)
        fraction = config.no_decrease_fraction
        # The step (1-based, within the first epoch) at which the loss is compared to its start.
        self.check_step = max(2, math.ceil(fraction * self.steps_per_epoch)) if fraction > 0 else 0
        self.window = config.smoothing or max(1, self.check_step // 4)
        self.window = min(self.window, max(1, self.check_step // 2))
        self.losses: list[float] = []
        self.signalled: str | None = None

    # -- per step -----------------------------------------------------------------------------------------------

    def nonfinite(self, loss: torch.Tensor) -> bool:
        """True when the loss is NaN/inf here or on any rank (then no rank takes the update)."""
        if not self.config.nonfinite_loss:
            return False
        bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=loss.device)
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bool(bad.item() > 0)

    def after_step(self, step: int, epoch: int, batch_in_epoch: int, values: dict) -> str | None:
        """The stop reason after optimizer step ``step`` (1-based), or None."""
        if values.get("nonfinite"):
            return (f"kill: non-finite training loss ({values['loss']}) at step {step + 1}, update skipped "
                    f"(kill.nonfinite_loss)")
        reason = self._signal_reason()
        if reason:
            return reason
        if not self.check_step or epoch != 0:
            return None
        self.losses.append(float(values["loss"]))
        if batch_in_epoch != self.check_step:
            return None
        if len(self.losses) < self.check_step:  # resumed inside epoch 1: the start of the curve is unknown
            return None
        w = self.window
        start = sum(self.losses[:w]) / w
        now = sum(self.losses[self.check_step - w:self.check_step]) / w
        limit = start * (1 - self.config.min_decrease)
        reason = None
        if not now < limit:
            wanted = (f"below {_fmt(limit)} ({self.config.min_decrease:.0%} under the start)"
                      if self.config.min_decrease else "below it")
            reason = (f"kill: training loss not decreasing: mean of steps {self.check_step - w + 1}-"
                      f"{self.check_step} is {_fmt(now)}, mean of steps 1-{w} was {_fmt(start)}, wanted {wanted} "
                      f"at {self.config.no_decrease_fraction:.0%} of epoch 1 (kill.no_decrease_fraction)")
        return self._agree(reason)

    # -- per epoch ----------------------------------------------------------------------------------------------

    def after_epoch(self, epochs_done: int, metrics: dict) -> str | None:
        """The stop reason once ``epochs_done`` epochs are complete with these validation metrics, or None."""
        config = self.config
        reason = self._signal_reason()
        if reason or not (config.min or config.max):
            return reason
        reason = None
        if epochs_done >= max(1, config.after_epoch):
            for name, bound in config.min.items():
                value = metrics.get(name)
                if value is not None and math.isfinite(value) and value < bound:
                    reason = (f"kill: {name} {_fmt(value)} < min {_fmt(bound)} after epoch {epochs_done} "
                              f"(kill.min.{name})")
                    break
            if reason is None:
                for name, bound in config.max.items():
                    value = metrics.get(name)
                    if value is not None and math.isfinite(value) and value > bound:
                        reason = (f"kill: {name} {_fmt(value)} > max {_fmt(bound)} after epoch {epochs_done} "
                                  f"(kill.max.{name})")
                        break
        return self._agree(reason)

    # -- signals ------------------------------------------------------------------------------------------------

    def _signal_reason(self) -> str | None:
        flag = 1.0 if self.signalled else 0.0
        if self.world > 1:
            tensor = torch.tensor(flag, device=self.device)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = float(tensor.item())
        if flag:
            return f"interrupted by {self.signalled or 'a signal on another rank'}"
        return None

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM set a flag that stops the run after the current step (a second SIGINT raises
        KeyboardInterrupt at once). Main thread only; :meth:`restore_signal_handlers` puts the old ones back."""
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self.signalled and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signalled = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):
                pass

    def restore_signal_handlers(self) -> None:
        for sig, old in getattr(self, "_previous", {}).items():
            signal.signal(sig, old)
        self._previous = {}

    def _agree(self, reason: str | None) -> str | None:
        """Rank 0's decision, on every rank."""
        if self.world <= 1:
            return reason
        box = [reason]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]
