"""Scalar logging to TensorBoard (always) and Weights & Biases (when ``wandb_activate=True``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from torch.utils.tensorboard import SummaryWriter


class Logger:
    """Writes scalars to ``<run_dir>/summaries`` and, if a wandb config is given, to a wandb run.

    Args:
        run_dir: the run folder. wandb: ``None`` or a dict with ``project``, ``entity``, ``group``, ``name``,
            ``tags`` and ``config`` (the resolved run config); honours ``WANDB_MODE=offline``.

    A TensorBoard write that fails with an ``OSError`` (disk full, folder turned read-only) prints one
    ``error:`` line on stderr and turns TensorBoard off for the rest of the run; training goes on (checkpoints
    report their own write errors, see ``checkpoint_error``).

    Raises:
        ImportError: wandb is requested but not installed (``pip install meow-isaac[wandb]``).
    """

    def __init__(self, run_dir: Path, wandb: Optional[Mapping[str, Any]] = None) -> None:
        self.run = None
        if wandb is not None:
            try:
                import wandb as wandb_lib
            except ImportError as err:
                raise ImportError("wandb_activate=True needs wandb: pip install 'meow-isaac[wandb]'") from err
            self.run = wandb_lib.init(
                project=wandb["project"], entity=wandb.get("entity") or None, group=wandb.get("group") or None,
                name=wandb.get("name") or None, tags=list(wandb.get("tags") or []), config=wandb.get("config"),
                dir=str(run_dir), sync_tensorboard=False, reinit=True)
        self.log_dir = Path(run_dir) / "summaries"
        self.writer: Optional[SummaryWriter] = SummaryWriter(log_dir=str(self.log_dir))

    def _tensorboard_failed(self, err: OSError) -> None:
        print(f"error: TensorBoard could not write to {self.log_dir} ({err}); TensorBoard logging is off for the "
              f"rest of this run, training goes on", file=sys.stderr)
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.close()
        except OSError:
            pass

    def log(self, scalars: Dict[str, float], step: int) -> None:
        """Write host floats ``scalars`` at x-axis ``step`` (environment frames)."""
        try:
            if self.writer is not None:
                for key, value in scalars.items():
                    self.writer.add_scalar(key, value, step)
        except OSError as err:
            self._tensorboard_failed(err)
        if self.run is not None:
            self.run.log(dict(scalars, frame=step), step=step)

    def log_video(self, path: Path, step: int) -> None:
        """Upload an mp4 to wandb when active (TensorBoard keeps the file path in the run folder)."""
        if self.run is not None:
            import wandb as wandb_lib

            self.run.log({"video": wandb_lib.Video(str(path), format="mp4")}, step=step)

    def close(self) -> None:
        """Flush and close the writers."""
        try:
            if self.writer is not None:
                self.writer.close()
        except OSError as err:
            self._tensorboard_failed(err)
        if self.run is not None:
            self.run.finish()
