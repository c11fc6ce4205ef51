"""Host-side metrics: metrics.jsonl, TensorBoard scalars and a progress bar."""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def to_python(value: Any):
    """Arrays -> floats / lists of floats (per-seed lists keep the seed axis); NaN stays NaN."""
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    array = np.asarray(value)
    if array.ndim == 0:
        return array.item()
    return array.tolist()


class RunWriter:
    """Appends one JSON object per log point to metrics.jsonl and mirrors scalars to TensorBoard.

    Per-seed lists are written to TensorBoard as their mean over seeds.
    """

    def __init__(self, run_dir: str, purge_step: int | None = None):
        """purge_step: on resume, TensorBoard hides the old events from this step on (they are rewritten)."""
        from tensorboardX import SummaryWriter

        self._jsonl = open(os.path.join(run_dir, 'metrics.jsonl'), 'a')
        self._tb = SummaryWriter(run_dir, purge_step=purge_step)

    def write(self, record: dict) -> None:
        record = to_python(record)
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()
        step = record['step']
        for name, value in record.items():
            if name in ('step', 'phase'):
                continue
            values = value if isinstance(value, list) else [value]
            if values and all(isinstance(v, (int, float)) for v in values):
                mean = float(np.mean(values))
                if math.isfinite(mean):
                    self._tb.add_scalar(f"{record['phase']}/{name}", mean, step)

    def close(self) -> None:
        self._jsonl.close()
        self._tb.close()


def progress_bar(disable: bool = False) -> Progress:
    """Steps done / total, elapsed, remaining, env steps/s and the latest normalised score."""
    return Progress(
        TextColumn('[bold]{task.description}'), BarColumn(), MofNCompleteColumn(),
        TextColumn('{task.fields[speed]}'), TextColumn('{task.fields[score]}'),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=disable, transient=False,
    )
