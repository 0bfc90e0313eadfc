"""Custom loop behaviour (c): stop training from a plugin with ``trainer.should_stop``.

The loop checks ``trainer.should_stop`` after every batch (and honours ``min_epochs`` /
``min_steps``), so any plugin can end a run. This one stops once the training loss falls
below a threshold. It reads the loss every ``check_every_n_batches`` batches only, because
reading a tensor's value (``float(loss)``) waits for the device.

Run: ``python examples/plugins/stop_on_loss.py``
"""
from __future__ import annotations

from typing import Any, Optional

from engine import hookimpl


class StopOnLoss:
    """Sets ``trainer.should_stop`` when the training loss drops below ``threshold``.

    Args:
        threshold: stop once the loss is below this.
        check_every_n_batches: read the loss on every n-th batch only.
    """

    def __init__(self, threshold: float, check_every_n_batches: int = 1) -> None:
        self.threshold = threshold
        self.every = check_every_n_batches
        self.stopped_at_step: Optional[int] = None

    @hookimpl
    def on_train_batch_end(self, trainer: Any, outputs: Any, batch_idx: int) -> None:
        """Check the loss and ask the loop to stop when it is low enough."""
        if (batch_idx + 1) % self.every:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and float(loss.detach()) < self.threshold:
            trainer.should_stop = True
            if self.stopped_at_step is None:
                self.stopped_at_step = trainer.global_step


if __name__ == "__main__":
    from _toy import ToyRegression, quiet_trainer_kwargs

    from engine import Trainer

    stopper = StopOnLoss(threshold=1.0)
    trainer = Trainer(max_epochs=100, plugins=[stopper], **quiet_trainer_kwargs())
    trainer.fit(ToyRegression())
    print(f"stopped at step {stopper.stopped_at_step}, epoch {trainer.current_epoch}")
