"""Host-side metrics: metrics.jsonl, TensorBoard scalars and a progress bar."""
from __future__ import annotations

import json
import math
import os
import time
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


class _Progress(Progress):
    """rich's bar on a terminal. Written to a file or a pipe (a run in the background), rich shows the bar
    only when it stops, so there it prints a plain line instead: on each new score, and when the count
    moved, at most once per `every` seconds."""

    def __init__(self, *columns, every: float = 30.0, **kwargs):
        super().__init__(*columns, **kwargs)
        self._every, self._lines = every, {}

    def update(self, task_id, **fields):
        super().update(task_id, **fields)
        console = self.console
        if self.disable or console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal):
            return  # rich draws the bar itself
        task = self._tasks[task_id]
        now, (last, score) = time.monotonic(), self._lines.get(task_id, (None, ''))
        new_score = task.fields.get('score', '') != score
        moved = fields.get('completed') is not None or bool(fields.get('advance'))
        if not new_score and (not moved or (last is not None and now - last < self._every)):
            return
        self._lines[task_id] = (now, task.fields.get('score', ''))
        minutes, seconds = divmod(int(task.elapsed or 0.0), 60)
        elapsed = f'{minutes // 60}:{minutes % 60:02d}:{seconds:02d}'
        parts = [task.description, f'{task.completed:.0f}/{task.total:.0f}', task.fields.get('speed', ''),
                 task.fields.get('score', ''), f'elapsed {elapsed}']
        print('  '.join(p for p in parts if p), flush=True)


def progress_bar(disable: bool = False, every: float = 30.0) -> Progress:
    """Steps done / total, elapsed, remaining, env steps/s and the latest normalised score; plain lines
    (at most one per `every` seconds as the count moves) where the output is not a terminal."""
    return _Progress(
        TextColumn('[bold]{task.description}'), BarColumn(), MofNCompleteColumn(),
        TextColumn('{task.fields[speed]}'), TextColumn('{task.fields[score]}'),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=disable, transient=False, every=every,
    )
