"""Temporary: the batch windows moved to ``streams.step.batch`` (removed once agents/ imports that)."""

from streams.step.batch import Batcher, batch_id_for

__all__ = ["Batcher", "batch_id_for"]
