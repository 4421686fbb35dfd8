"""``distill teacher``: supervised training of a teacher (cross-entropy on the labels).

distill teacher teacher=resnet18 dataset=mnist5k

The recipe itself is :func:`distill.teachers.supervised.train_teacher`, which ``distill train``
also runs for the teacher it trains itself.
"""

from __future__ import annotations

from distill.config.entry import hydra_entry
from distill.teachers.supervised import train_teacher, validate

run = train_teacher

__all__ = ["main", "run", "validate"]

main = hydra_entry("teacher", run, metric="val_acc")

if __name__ == "__main__":
    main()
