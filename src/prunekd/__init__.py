"""prunekd: target-specific dataset pruning for knowledge distillation (UPB-NT, DCASE2024 Task 1)."""

__version__ = "0.1.0"
