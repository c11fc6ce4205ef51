"""The host loop of a run: the only Python loop, walking a table of phases with one `run_phase`.

    summary, state = Runner(cfg, seeds, run_dir, dataset=dataset).run()

Phases: pretrain (methods with an offline algorithm) -> warmup -> fine-tune. Each phase is a number of
calls of one compiled program; after a call the runner times it, writes its record, evaluates and
saves where the phase says. What it knows of the run between calls is `Progress`, a frozen record
that every checkpoint holds beside the device arrays, so `resume` picks up at the call after it.
The host never sees a transition.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable

from wsrl_mjx.files import atomic_path

PRETRAINED = 'pretrained'  # <run_dir>/pretrained/<updates>: the agent at the end of pretraining
# Metrics that may be NaN without anything being wrong: no episode ended in a chunk.
_MAY_BE_NAN = ('train_return',)


class Preempted(Exception):
    """SIGTERM arrived: the run stopped after `step`, saved there unless it keeps no checkpoints."""

    def __init__(self, step: int, saved: bool = True):
        super().__init__(step, saved)
        self.step, self.saved = step, saved


class Diverged(Exception):
    """A metric of the training became NaN or infinite: the run stopped without saving that state."""


@dataclasses.dataclass(frozen=True)
class Progress:
    """The host's part of a run's state: what a checkpoint holds besides the device arrays (as JSON,
    with these field names)."""
    config: dict  # config.json_config of the run
    seeds: int
    phase: str  # 'pretrain' or 'online'
    pretrain_chunks_done: int = 0
    step: int = 0  # online env steps per seed, warmup included
    warmup_done: bool = False
    chunks_done: int = 0  # fine-tuning chunks
    history: tuple = ()  # the evaluation records
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to this state
    pretrained_from: str | None = None
    wall: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(
        ('compile', 'pretrain', 'warmup', 'finetune', 'evaluate'), 0.0))  # seconds per part

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, host: dict) -> Progress:
        return cls(**{**host, 'history': tuple(host['history'])})

    def timed(self, part: str, seconds: float) -> Progress:
        return dataclasses.replace(self, wall={**self.wall, part: self.wall[part] + seconds})

    def checkpoint_step(self, pretrain_log_interval: int) -> int:
        """A checkpoint's number: pretraining updates + online env steps (per seed) done, always increasing."""
        return self.pretrain_chunks_done * pretrain_log_interval + self.step


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of the table: `chunks` calls of `program`, of which `done(progress)` are done."""
    name: str  # the records' phase: 'pretrain', 'warmup' or 'finetune'
    program: Callable | None  # (state, *data) -> (state, metrics); None: no call (a warmup of 0 steps)
    done: Callable  # Progress -> chunks of this phase done
    chunks: int
    transitions: int  # env steps (all envs) per seed and call
    updates: int  # updates per seed and call
    advance: Callable  # (Progress, chunk) -> Progress after that chunk
    evaluate_at: Callable  # chunk -> bool
    save_at: Callable  # (chunk, stop requested) -> bool
    speed: Callable  # record -> the progress bar's speed text


def non_finite(record: dict) -> str | None:
    """'name (seeds ...)' of the first metric of `record` that is NaN or infinite for some seed, else None."""
    import numpy as np

    for name, value in record.items():
        if name in ('phase', 'step', *_MAY_BE_NAN) or isinstance(value, str):
            continue
        values = np.asarray(value, np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f'{name} ({"seed index" if values.size > 1 else "value"} {", ".join(map(str, bad.tolist()))})'
    return None


class StopFlag:
    """While active, SIGTERM only sets `requested`: the run stops at the next chunk boundary, saved."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


class Runner:
    """One run, or its rest from the latest checkpoint in run_dir when `resume`.

    `pretrained` (train.read_pretrained) takes another run's pretrained agent instead of pretraining:
    its pretraining records open this run's metrics.jsonl and history, its wall-clock is not counted
    here. `dataset` is the host Dataset for the methods that use one. `on_saved(step)` is called after
    each checkpoint save has started; `stop` is what the runner asks whether to stop (default: SIGTERM).
    Writes config.json, metrics.jsonl, summary.json, TensorBoard events, policies/ and checkpoints/
    (process 0 writes the files; every process writes its shards of a checkpoint).
    """

    def __init__(self, cfg, seeds: int, run_dir: str, quiet: bool = False, resume: bool = False, dataset=None,
                 pretrained: dict | None = None, on_saved: Callable | None = None, stop: Any = None):
        import jax

        from wsrl_mjx import parallel
        from wsrl_mjx.checkpoint import Checkpointer
        from wsrl_mjx.config import json_config
        from wsrl_mjx.envs.registry import ENV_SPECS
        from wsrl_mjx.experiment import Experiment
        from wsrl_mjx.pipeline import offline
        from wsrl_mjx.pipeline.programs import compile_online_programs, compile_pretrain_programs, pretrain_state_shape

        self.cfg, self.seeds, self.run_dir, self.quiet = cfg, seeds, run_dir, quiet
        self.dataset, self.pretrained, self.on_saved = dataset, pretrained, on_saved
        self.stop = StopFlag() if stop is None else stop
        self.lead = jax.process_index() == 0
        rows = len(dataset) if dataset is not None else 0
        self.experiment = Experiment.from_config(cfg, seeds, rows)
        m = self.experiment.method
        if (m.pretrain is not None or m.offline_ratio > 0) and dataset is None:
            raise ValueError(f'method {cfg.method} needs a dataset (train.load_dataset)')
        os.makedirs(run_dir, exist_ok=True)
        self.checkpointer = Checkpointer(run_dir, max_to_keep=cfg.checkpoint_keep) if cfg.checkpoint_interval else None

        tic = time.perf_counter()
        if self.lead and not quiet:  # XLA prints nothing while it works, and a first run's compile takes minutes
            print('compiling the run\'s programs (1-5 minutes on a 2-core CPU the first time; cached on disk '
                  'for later runs) ...', flush=True)
        spec, pspec = self.experiment.spec, self.experiment.pretrain_spec
        self.progs = compile_online_programs(spec)
        host = self.checkpointer.read_host(self.checkpointer.latest_step()) if resume else None
        # The pretraining programs only when this process will pretrain (not when resuming after it).
        pretraining = pspec is not None and pretrained is None and (host is None or host['phase'] == 'pretrain')
        self.pprogs = compile_pretrain_programs(pspec) if pretraining else None

        self.run_key, agent_key, eval_key, pretrain_key = self.experiment.keys()
        if resume:
            step = self.checkpointer.latest_step()
            like = self.pprogs.state_shape if host['phase'] == 'pretrain' else self.progs.state_shape
            (self.state, self.eval_key), host = self.checkpointer.restore(step, (like, self.progs.state_shape.key))
            progress = Progress.from_json(host)
            if self.lead:
                progress = dataclasses.replace(progress, metrics_lines=_truncate_metrics(run_dir, progress.metrics_lines))
            config = json_config(cfg)
            if progress.config != config:  # a longer online_steps (the only difference parse_args lets by)
                progress = dataclasses.replace(progress, config=config)
                self._write_config(progress)
        else:
            progress = Progress(config=json_config(cfg), seeds=seeds, phase='online' if pspec is None else 'pretrain',
                                pretrained_from=pretrained['source'] if pretrained else None)
            self._write_config(progress)
            # Every process computes every seed's keys and initial agent (cheap), then keeps its own shards.
            if pretrained is not None:
                # The evaluation keys go on from the source's: its evaluations during pretraining used some.
                source = Checkpointer(pretrained['source'], asynchronous=False, subdir=PRETRAINED)
                (self.state, eval_key), _ = source.restore(
                    pretrained['step'], (pretrain_state_shape(pspec), self.progs.state_shape.key))
                source.close()
            elif self.pprogs is not None:
                self.state = self.pprogs.init(pretrain_key, self.pprogs.init_agent(agent_key))
            else:
                self.state = self.progs.init(self.run_key, self.progs.init_agent(agent_key))
            self.eval_key = parallel.put(eval_key, self.progs.sharding)
        self.data = None
        if dataset is not None and (self.pprogs is not None or m.offline_ratio > 0):
            sharding = self.pprogs.data_sharding if self.pprogs else parallel.replicated(self.progs.sharding.mesh)
            self.data = offline.from_dataset(dataset, cfg.agent.discount, cfg.reward_scale, cfg.reward_bias,
                                             sharding=sharding, failure_reward=ENV_SPECS[cfg.env].failure_reward)
        jax.block_until_ready(self.state)
        self.progress = progress.timed('compile', time.perf_counter() - tic)
        self.resumed = resume
        self.writer = None

    # -- the table -----------------------------------------------------------------------------------

    def phases(self) -> list[Phase]:
        """The run's phases in order."""
        cfg, plan = self.cfg, self.experiment.spec.plan
        p = cfg.pretrain
        pretrain_chunks = p.steps // p.log_interval
        k = plan.warmup_iterations * cfg.num_envs
        every = cfg.checkpoint_interval // cfg.log_interval
        table = []
        if self.experiment.pretrain_spec is not None:
            table.append(Phase(
                name='pretrain', program=self.pprogs.train if self.pprogs else None,
                done=lambda progress: progress.pretrain_chunks_done, chunks=pretrain_chunks, transitions=0,
                updates=p.log_interval,
                advance=lambda progress, chunk: dataclasses.replace(progress, pretrain_chunks_done=chunk),
                evaluate_at=lambda chunk: chunk % (p.eval_interval // p.log_interval) == 0 or chunk == pretrain_chunks,
                # at evaluations; the last one is saved at the phase change
                save_at=lambda chunk, stop: (chunk % (p.eval_interval // p.log_interval) == 0 or stop)
                and chunk != pretrain_chunks,
                speed=lambda record: f"{record['updates_per_s']:.0f} updates/s"))
        table.append(Phase(
            name='warmup', program=self.progs.warmup, done=lambda progress: int(progress.warmup_done), chunks=1,
            transitions=k, updates=0,
            advance=lambda progress, chunk: dataclasses.replace(progress, step=k, warmup_done=True),
            evaluate_at=lambda chunk: True,
            save_at=lambda chunk, stop: k > 0,  # without warmup the state is the phase change's, saved already
            speed=lambda record: ''))
        per_step = self.experiment.spec.online.critic_steps  # critic updates per env step
        table.append(Phase(
            name='finetune', program=self.progs.train, done=lambda progress: progress.chunks_done, chunks=plan.chunks,
            transitions=cfg.log_interval, updates=plan.chunk_iterations * per_step,
            advance=lambda progress, chunk: dataclasses.replace(progress, step=progress.step + cfg.log_interval,
                                                                chunks_done=chunk),
            evaluate_at=lambda chunk: chunk % plan.eval_every_chunks == 0 or chunk == plan.chunks,
            save_at=lambda chunk, stop: bool(every) and (chunk % every == 0 or chunk == plan.chunks or stop),
            speed=lambda record: f"{record['env_steps_per_s']:.0f} steps/s"))
        return table

    def run(self):
        """Runs the phases left; returns (summary dict, final OnlineState with a leading seed axis).
        Raises Preempted on SIGTERM, Diverged when a metric is not finite."""
        from wsrl_mjx.metrics import RunWriter, progress_bar
        from wsrl_mjx.plot import plot_runs

        cfg = self.cfg
        if self.lead:
            self.writer = RunWriter(self.run_dir, purge_step=self._purge_step() if self.resumed else None)
        try:
            with self.stop, progress_bar(disable=self.quiet or not self.lead) as bar:
                self.bar = bar
                online_task = None
                for phase in self.phases():
                    if phase.name == 'pretrain':
                        if self.progress.phase != 'pretrain':
                            continue
                        self.task = bar.add_task(f'{cfg.name} pretrain {self.experiment.pretrain_spec.algo} x{self.seeds}',
                                                 total=cfg.pretrain.steps,
                                                 completed=self.progress.pretrain_chunks_done * cfg.pretrain.log_interval,
                                                 speed='', score='')
                        if self.pretrained is not None:
                            self._copy_pretraining(phase)
                        self.run_phase(phase)
                        if self.progress.pretrain_chunks_done == phase.chunks:
                            self._change_phase()
                        bar.remove_task(self.task)
                        continue
                    if online_task is None:
                        online_task = self.task = bar.add_task(f'{cfg.name} {cfg.env} x{self.seeds}',
                                                               total=cfg.online_steps, completed=self.progress.step,
                                                               speed='', score='')
                    if self.progress.phase == 'online':
                        self.run_phase(phase)
        finally:  # also when the run stops on an error: saves finish, files close, device data is freed
            if self.data is not None:
                self.data.delete()
            if self.checkpointer is not None:
                self.checkpointer.wait()
                self.checkpointer.close()
            if self.writer is not None:
                self.writer.close()
        progress = self.progress
        if progress.chunks_done < self.experiment.spec.plan.chunks:
            raise Preempted(progress.step if progress.phase == 'online' else
                            progress.pretrain_chunks_done * cfg.pretrain.log_interval, saved=self.checkpointer is not None)
        summary = _summary(cfg, self.seeds, progress.history, progress.wall, self.dataset)
        if progress.pretrained_from:
            summary['pretrained_from'] = progress.pretrained_from
        if self.lead:
            write_json(os.path.join(self.run_dir, 'summary.json'), summary)
            plot_runs([self.run_dir], os.path.join(self.run_dir, 'curves.png'),
                      title=f'{cfg.name}: {cfg.method} on {cfg.env}')
        return summary, self.state

    def run_phase(self, phase: Phase) -> None:
        """The phase's calls not done yet, each timed, recorded, evaluated and saved as it says; stops
        at a call boundary when a stop is requested."""
        import jax

        # The offline data goes to pretraining, and to fine-tuning where the method keeps it; warmup takes none.
        takes_data = phase.name == 'pretrain' or (phase.name == 'finetune' and self.experiment.method.offline_ratio > 0)
        extra = (self.data,) if takes_data else ()
        for chunk in range(phase.done(self.progress) + 1, phase.chunks + 1):
            if self.stop.requested:
                break
            record = None
            if phase.program is not None:
                tic = time.perf_counter()
                self.state, metrics = phase.program(self.state, *extra)
                jax.block_until_ready(self.state)
                seconds = time.perf_counter() - tic
                self.progress = phase.advance(self.progress.timed(phase.name, seconds), chunk)
                record = self._chunk_record(phase, metrics, seconds)
                self._write(record)
            else:
                self.progress = phase.advance(self.progress, chunk)
            completed = (self.progress.pretrain_chunks_done * self.cfg.pretrain.log_interval
                         if phase.name == 'pretrain' else self.progress.step)
            self.bar.update(self.task, completed=completed, **({'speed': phase.speed(record)} if record else {}))
            if phase.evaluate_at(chunk):
                self._evaluate(phase)
                self.bar.update(self.task, score=self._score())
            if phase.save_at(chunk, self.stop.requested):
                self._checkpoint()

    # -- what a call leaves behind -------------------------------------------------------------------

    def _step(self, phase: Phase) -> int:
        """The records' step: pretraining updates in pretraining, online env steps per seed after it."""
        if phase.name == 'pretrain':
            return self.progress.pretrain_chunks_done * self.cfg.pretrain.log_interval
        return self.progress.step

    def _chunk_record(self, phase: Phase, metrics, seconds: float) -> dict:
        import numpy as np

        from wsrl_mjx import parallel

        metrics = parallel.gather(metrics)
        record = {'phase': phase.name, 'step': self._step(phase)}
        if phase.name != 'pretrain':
            episodes = metrics.episodes
            record['train_return'] = np.where(episodes > 0, metrics.episode_return_sum / np.maximum(episodes, 1),
                                              np.nan)
            metrics = metrics.losses
        return {**record, **metrics, 'env_steps_per_s': self.seeds * phase.transitions / seconds,
                'updates_per_s': self.seeds * phase.updates / seconds}

    def _write(self, record: dict) -> None:
        if self.lead:
            self.writer.write(record)
        self.progress = dataclasses.replace(self.progress, metrics_lines=self.progress.metrics_lines + 1)
        bad = non_finite(record)
        if bad is not None:
            saved = self.checkpointer.latest_step() if self.checkpointer is not None else None
            raise Diverged(f"training diverged: {bad} is not finite in the {record['phase']} record at step "
                           f"{record['step']} (metrics.jsonl); the run stopped there"
                           + (f', its last checkpoint is {saved}' if saved is not None else ''))

    def _evaluate(self, phase: Phase) -> None:
        import jax

        from wsrl_mjx import parallel
        from wsrl_mjx.data.policies import save_actor
        from wsrl_mjx.envs import normalized_score
        from wsrl_mjx.metrics import to_python

        cfg, step, actor = self.cfg, self._step(phase), self.state.agent.actor
        tic = time.perf_counter()
        self.eval_key, this_key = _split_keys(self.eval_key)
        returns = parallel.gather(self.progs.evaluate(actor, this_key)).mean(axis=1)
        self.progress = self.progress.timed('evaluate', time.perf_counter() - tic)
        record = to_python({'phase': phase.name, 'step': step, 'return': returns,
                            'normalized_score': normalized_score(cfg.env, returns)})
        self._write(record)
        self.progress = dataclasses.replace(self.progress, history=(*self.progress.history, record))
        actors = parallel.gather(actor)
        tag = f'pretrain{step:07d}' if phase.name == 'pretrain' else f'step{step:07d}'
        agent = self.experiment.spec.online.agent
        for s in range(self.seeds) if self.lead else ():
            # Every evaluated actor is kept (a few hundred kB): behaviour policies are picked from these.
            save_actor(os.path.join(self.run_dir, 'policies', f'seed{cfg.seed + s}_{tag}.npz'),
                       jax.tree.map(lambda x: x[s], actors), {
                           'env': cfg.env, 'seed': cfg.seed + s, 'phase': phase.name, 'step': step, 'config': cfg.name,
                           'return': record['return'][s], 'normalized_score': record['normalized_score'][s],
                           'log_std_min': agent.log_std_min, 'log_std_max': agent.log_std_max})

    def _checkpoint(self) -> None:
        if self.checkpointer is None:
            return
        step = self.progress.checkpoint_step(self.cfg.pretrain.log_interval)
        self.checkpointer.save(step, (self.state, self.eval_key), self.progress.to_json())
        if self.on_saved is not None:
            self.on_saved(step)

    def _score(self) -> str:
        import numpy as np

        return f"score {np.mean(self.progress.history[-1]['normalized_score']):.1f}"

    # -- the pretraining's end -----------------------------------------------------------------------

    def _copy_pretraining(self, phase: Phase) -> None:
        """Another run's pretraining: its records, then its end (the phase change)."""
        for record in self.pretrained['records']:
            self._write(record)
            if 'normalized_score' in record:
                self.progress = dataclasses.replace(self.progress, history=(*self.progress.history, record))
        self.progress = dataclasses.replace(self.progress, pretrain_chunks_done=phase.chunks)
        self.bar.update(self.task, completed=self.cfg.pretrain.steps, score=self._score())

    def _change_phase(self) -> None:
        """The pretrained agent is kept for runs that start from it (--pretrained_from); the online state
        takes it unchanged; the offline data leaves the device unless the method keeps training on it."""
        if self.pretrained is None:
            save_pretrained(self.run_dir, (self.state, self.eval_key), self.progress.config, self.seeds,
                            self._metrics_lines(), self.progress.wall['pretrain'])
        self.state = self.experiment.hand_over(self.state, self.progs, self.run_key)
        if self.experiment.method.offline_ratio == 0 and self.data is not None:
            self.data.delete()
            self.data = None
        self.progress = dataclasses.replace(self.progress, phase='online')
        self._checkpoint()

    def _metrics_lines(self) -> list:
        """The records this run wrote so far (process 0's metrics.jsonl; other processes: none)."""
        path = os.path.join(self.run_dir, 'metrics.jsonl')
        if not self.lead or not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f.readlines()[:self.progress.metrics_lines]]

    def _purge_step(self) -> int | None:
        """On resume, TensorBoard hides the events at and after this step (they are written again). One
        step applies to every tag, so it is only used where it cannot hide the other phase's events; the
        exact record is metrics.jsonl, which is cut back to the checkpoint."""
        pretrained = self.progress.pretrain_chunks_done * self.cfg.pretrain.log_interval
        if self.progress.phase == 'pretrain':
            return pretrained
        return self.progress.step if self.progress.step >= pretrained else None

    def _write_config(self, progress: Progress) -> None:
        from wsrl_mjx.config import learnt_from

        if self.lead:
            write_json(os.path.join(self.run_dir, 'config.json'), {
                'config': progress.config, 'seeds': self.seeds, 'dataset': learnt_from(self.cfg),
                **({'pretrained_from': progress.pretrained_from} if progress.pretrained_from else {})})


def save_pretrained(run_dir: str, state, config: dict, seeds: int, records: list, seconds: float) -> None:
    """Saves (pretraining state (agent, key, update counter), evaluation keys [S]) under
    <run_dir>/pretrained/<updates>, with the config (as json_config) that pretrained it, its seed count,
    the records of its pretraining (metrics.jsonl lines) and its seconds of updates: what
    train.read_pretrained checks and a run copies."""
    from wsrl_mjx.checkpoint import Checkpointer

    saver = Checkpointer(run_dir, max_to_keep=1, asynchronous=False, subdir=PRETRAINED)
    saver.save(config['pretrain']['steps'], state, {'config': config, 'seeds': seeds, 'records': records,
                                                    'wall_pretrain_s': seconds})
    saver.wait()
    saver.close()


def write_json(path: str, obj) -> None:
    """Writes `obj` to `path` atomically: a reader sees the old file or the new one, never half of one."""
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)


def _summary(cfg, seeds: int, history, wall: dict, dataset=None) -> dict:
    import numpy as np

    from wsrl_mjx.config import learnt_from, warmup_steps
    from wsrl_mjx.data.dataset import summarize

    def scores(phase):
        found = [r for r in history if r['phase'] == phase]
        return found[-1]['normalized_score'] if found else None

    final = np.asarray(history[-1]['normalized_score'])
    return {
        'env': cfg.env, 'method': cfg.method, 'dataset': learnt_from(cfg),
        'seeds': list(range(cfg.seed, cfg.seed + seeds)), 'online_steps': cfg.online_steps,
        'normalized_score': final.tolist(),
        'normalized_score_mean': float(final.mean()), 'normalized_score_std': float(final.std()),
        'return': list(history[-1]['return']),
        'normalized_score_offline': scores('pretrain'),
        'normalized_score_after_warmup': scores('warmup'),
        'warmup_steps': warmup_steps(cfg),
        # The behaviour the offline data came from: mean over the dataset's finished episodes.
        'dataset_normalized_score': (summarize(dataset, cfg.env).get('normalized_score_mean')
                                     if dataset is not None else None),
        'wall_clock_s': {k: round(v, 3) for k, v in wall.items()},
    }


def _split_keys(keys):
    """Per-seed split of typed keys [S] -> (next keys [S], keys to use now [S])."""
    import jax

    split = jax.vmap(jax.random.split)(keys)  # [S, 2]; sliced, not iterated: it may span processes
    return split[:, 0], split[:, 1]


def _truncate_metrics(run_dir: str, lines: int) -> int:
    """Drops metrics.jsonl lines written after the checkpoint being resumed (they will be written again)."""
    path = os.path.join(run_dir, 'metrics.jsonl')
    with open(path) as f:
        kept = f.readlines()[:lines]
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        f.writelines(kept)
    return len(kept)
