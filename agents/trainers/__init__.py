"""Trainers: each module defines a frozen ``Config`` dataclass and ``main(cfg)``; scripts/train.py dispatches."""
