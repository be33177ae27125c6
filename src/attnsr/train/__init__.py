"""Training: ``attnsr train CONFIG`` (see docs/training.md).

``load_config`` reads and checks a YAML/TOML config; ``train`` runs it (single process or
one process per GPU under ``torchrun``) and exports ``<run_dir>/model.safetensors``.
"""

from attnsr.train.config import TrainConfig, load_config
from attnsr.train.loop import NonFiniteLossError, Trainer, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer", "load_config", "train"]
