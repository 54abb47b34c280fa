"""The T5X-style trainer: jitted sharded steps and the train/eval loop.

`Trainer` owns the compiled steps: `jax.jit` with explicit in/out shardings
derived from the model's logical axes, the state donated, gradients
accumulated over micro-batches inside the step. `train` is the loop that a
binary configures with gin: input, checkpoints, eval, metrics, NaN guard and
SIGTERM handling.
"""
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Mapping

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from musiclm_jax import checkpoints
from musiclm_jax import dir_lock
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import paths
from musiclm_jax import train_state as train_state_lib
from musiclm_jax.data import pipeline
from musiclm_jax.errors import UserError
from musiclm_jax.models.base import BaseModel, BatchSpec

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


class TrainingDivergedError(UserError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


class Trainer:
  """Compiled, sharded train and eval steps for one model."""

  def __init__(self, model: BaseModel, partitioner: partitioning.Partitioner,
               optimizer: optax.GradientTransformation, batch_spec: BatchSpec,
               ema_decay: float | None = None, grad_accum_steps: int = 1, seed: int = 0):
    self.model = model
    self.partitioner = partitioner
    self.batch_spec = dict(batch_spec)
    self.grad_accum_steps = grad_accum_steps
    self._rng = jax.random.key(seed)
    batch_size = next(iter(self.batch_spec.values())).shape[0]
    partitioner.check_batch_size(batch_size)
    if grad_accum_steps > 1 and type(model).train_step is not BaseModel.train_step:
      raise UserError(f"{type(model).__name__} has its own train_step, which grad_accum_steps does "
                      "not apply to: set grad_accum_steps=1")
    if batch_size % grad_accum_steps:
      raise UserError(f"batch size {batch_size} is not divisible by grad_accum_steps={grad_accum_steps}")

    init_rng = jax.random.fold_in(self._rng, -1 % 2**31)
    with partitioner.context():
      boxed = jax.eval_shape(model.init, init_rng, self.batch_spec)
    specs = train_state_lib.logical_specs(boxed, optimizer, ema_decay)
    self.state_shardings = partitioner.logical_to_sharding(specs)
    abstract = jax.eval_shape(
        lambda: train_state_lib.TrainState.create(nn.unbox(boxed), optimizer, ema_decay))
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, self.state_shardings)
    self.batch_shardings = {k: partitioner.batch_sharding(len(v.shape)) for k, v in self.batch_spec.items()}

    self._init_params = partitioner.jit(lambda rng: nn.unbox(model.init(rng, self.batch_spec)),
                                        in_shardings=None, out_shardings=self.state_shardings.params)
    self._create_state = partitioner.jit(
        lambda params: train_state_lib.TrainState.create(params, optimizer, ema_decay),
        in_shardings=(self.state_shardings.params,), out_shardings=self.state_shardings,
        donate_argnums=(0,))
    self._init_rng = init_rng
    replicated = partitioner.replicated()
    self._train_step = partitioner.jit(
        self._train_step_fn, in_shardings=(self.state_shardings, self.batch_shardings),
        out_shardings=(self.state_shardings, replicated), donate_argnums=(0,))
    self._eval_step = partitioner.jit(
        self._eval_step_fn, in_shardings=(self.state_shardings.params, self.batch_shardings),
        out_shardings=replicated)

  @property
  def flops_per_step(self) -> float:
    return self.model.flops_per_batch(self.batch_spec)

  def init_state(self) -> train_state_lib.TrainState:
    """Fresh params from the jitted init, the model's pre-trained weights put in on the host."""
    params = self.model.load_pretrained(self._init_params(self._init_rng))
    return self._create_state(jax.tree.map(_to_global, params, self.state_shardings.params))

  def train_step(self, state, batch) -> tuple[train_state_lib.TrainState, dict[str, jax.Array]]:
    """One optimizer update; `batch` holds global arrays (or host arrays on one host)."""
    return self._train_step(state, batch)

  def eval_step(self, params, batch) -> dict[str, jax.Array]:
    return self._eval_step(params, batch)

  def lower_train_step(self):
    """Lowers the train step on abstract inputs (no allocation), for AOT compiles."""
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_shardings[k])
                      for k, v in self.batch_spec.items()}
    return self._train_step.lower(self.abstract_state, abstract_batch)

  def _train_step_fn(self, state, batch):
    rng = jax.random.fold_in(self._rng, state.step)
    custom = self.model.train_step(state, batch, rng)
    if custom is not None:
      return custom
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    if self.grad_accum_steps == 1:
      (loss, metrics), grads = grad_fn(state.params, batch, rng)
      metrics = dict(metrics, loss=loss)
    else:
      grads, metrics = self._accumulate(grad_fn, state.params, batch, rng)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.apply_gradients(grads), metrics

  def _accumulate(self, grad_fn, params, batch, rng):
    """The big batch's gradients from micro-batches; micro-batch i takes rows i, i+n, i+2n, ...

    Strided rows keep every data-parallel shard equally busy in each micro-batch.
    A model that reports `num_tokens` divides its loss by that count, so each
    micro-batch's loss, gradients and metrics are weighted by it and the sums
    divided once by the total (T5X's loss-normalising factor): with ragged
    padding a micro-batch of few loss tokens then weighs as little as it
    should. Without `num_tokens`, every micro-batch weighs the same.
    """
    n = self.grad_accum_steps
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1), batch)

    def body(carry, xs):
      i, micro_batch = xs
      (loss, metrics), grads = grad_fn(params, micro_batch, jax.random.fold_in(rng, i))
      grad_sum, metric_sum, weight_sum = carry
      weight = jnp.asarray(metrics.get("num_tokens", 1.0), jnp.float32)
      grad_sum = jax.tree.map(lambda a, g: a + weight * g.astype(jnp.float32), grad_sum, grads)
      metric_sum = {k: metric_sum[k] + (v if k == "num_tokens" else weight * v)
                    for k, v in dict(metrics, loss=loss).items()}
      return (grad_sum, metric_sum, weight_sum + weight), None

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    first = jax.tree.map(lambda x: x[0], micro)
    metric_zeros = jax.tree.map(
        lambda m: jnp.zeros(m.shape, jnp.float32),
        jax.eval_shape(lambda: dict(grad_fn(params, first, rng)[0][1], loss=0.0)))
    (grad_sum, metric_sum, weight_sum), _ = jax.lax.scan(
        body, (zeros, metric_zeros, jnp.zeros((), jnp.float32)), (jnp.arange(n), micro))
    # As the model's own normaliser: a batch without loss tokens has zero loss, not NaN.
    total = jnp.maximum(weight_sum, 1.0)
    grads = jax.tree.map(lambda g, p: (g / total).astype(p.dtype), grad_sum, params)
    metrics = {k: v if k == "num_tokens" else v / total for k, v in metric_sum.items()}
    return grads, metrics

  def _eval_step_fn(self, params, batch):
    loss, metrics = self.model.loss_fn(params, batch, None)
    return dict(metrics, loss=loss)


def train(*,
          model: BaseModel,
          model_dir: str,
          total_steps: int,
          train_dataset_cfg: pipeline.BatchSource,
          eval_dataset_cfg: pipeline.BatchSource | None = None,
          partitioner: partitioning.Partitioner | None = None,
          optimizer: Callable[..., optax.GradientTransformation] = optimizers.make_optimizer,
          learning_rate: optax.Schedule | float | None = None,
          ema_decay: float | None = None,
          grad_accum_steps: int = 1,
          checkpoint_period: int = 1000,
          keep_checkpoints: int | None = 3,
          async_checkpointing: bool = True,
          eval_period: int = 0,
          eval_steps: int = 10,
          log_period: int = 10,
          peak_flops_per_device: float | None = None,
          seed: int = 0,
          stop_at_step: int | None = None,
          on_ready: Callable[[], None] | None = None) -> dict[str, Any]:
  """Trains `model` to `total_steps`, resuming from MODEL_DIR's latest checkpoint.

  Args:
    optimizer: factory taking `learning_rate` (gin: `@optimizers.make_optimizer`).
    learning_rate: schedule or constant given to `optimizer` and logged
      (default: `optimizers.learning_rate_schedule(total_steps)`).
    peak_flops_per_device: for MFU, overrides the table of published peaks
      in metrics.py (e.g. for a device kind it lacks).
    stop_at_step: stop (with a checkpoint) before total_steps, e.g. to split
      a run across jobs; the schedule still spans total_steps.
    on_ready: called once the state is initialised or restored, before the
      first step; a checkpoint from another model fails before this runs, so
      nothing in MODEL_DIR is overwritten.

  Returns:
    {'step': last step, 'preempted': whether SIGTERM stopped it,
     'last_metrics': the last logged train metrics, 'checkpoint_dir': where
     checkpoints are, 'metrics_path': the metrics.jsonl file,
     'tensorboard_dir': the TensorBoard event folder}.
  """
  _check_writable(model_dir)
  # One writer per MODEL_DIR (process 0 speaks for a multi-host run). Everything
  # opened below is closed in reverse order however the run ends, the lock last.
  with contextlib.ExitStack() as cleanup:
    if jax.process_index() == 0:
      cleanup.enter_context(dir_lock.DirLock(model_dir))
    partitioner = partitioner or partitioning.Partitioner()
    shard_index, num_shards = partitioner.host_shard()
    if learning_rate is None:
      schedule = optimizers.learning_rate_schedule(total_steps)
    elif callable(learning_rate):
      schedule = learning_rate
    else:
      schedule = optax.constant_schedule(learning_rate)
    tx = optimizer(learning_rate=schedule)

    checkpointer = checkpoints.Checkpointer(paths.join(model_dir, "checkpoints"),
                                            keep=keep_checkpoints, async_save=async_checkpointing)
    cleanup.callback(checkpointer.close)
    batches = train_dataset_cfg.get_batches(shard_index, num_shards)
    first = next(batches)
    batch_spec = {k: jax.ShapeDtypeStruct((v.shape[0] * num_shards, *v.shape[1:]), v.dtype)
                  for k, v in first.items()}
    trainer = Trainer(model, partitioner, tx, batch_spec, ema_decay, grad_accum_steps, seed)

    restored = checkpointer.restore_latest(trainer.abstract_state)
    if restored is None:
      start_step, state, batches_consumed = None, trainer.init_state(), 0
    else:
      start_step, state, batches_consumed = restored
      batches = train_dataset_cfg.get_batches(shard_index, num_shards, batches_consumed)
      first = None
      logging.info("resumed from step %d", start_step)
    batches = _prepend(first, batches)
    if on_ready is not None:
      on_ready()

    writer = metrics_lib.MetricsWriter(model_dir)
    cleanup.callback(writer.flush)
    writer.truncate_after(start_step or 0)  # a crashed run logged steps no checkpoint holds
    peak_flops = (metrics_lib.peak_flops(partitioner.mesh.devices.flat, peak_flops_per_device)
                  if trainer.flops_per_step else 0.0)
    end_step = min(total_steps, stop_at_step or total_steps)
    step = int(state.step)
    preemption = _Preemption()
    cleanup.callback(preemption.restore)
    stopping = False
    progress = tqdm.tqdm(total=end_step, initial=step, disable=not sys.stderr.isatty(), desc="train")
    cleanup.callback(progress.close)
    pending: list[Mapping[str, jax.Array]] = []
    last_metrics: dict[str, float] = {}
    last_good_step = start_step
    window_start = time.perf_counter()
    while step < end_step and not stopping:
      try:
        batch = next(batches)
      except StopIteration:
        raise UserError(f"training data ran out at step {step}: set repeat=True in the "
                        f"DatasetConfig or lower TRAIN_STEPS") from None
      state, step_metrics = trainer.train_step(state, partitioner.make_global_batch(batch))
      step += 1
      batches_consumed += 1
      pending.append(step_metrics)
      progress.update(1)
      # Read once per step, so the save below and the loop's exit agree.
      stopping = preemption.reached(step)
      due_checkpoint = step % checkpoint_period == 0 or step == end_step
      if step % log_period == 0 or due_checkpoint or stopping:
        # XLA can hand back the metrics before the update finishes: wait for the state.
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - window_start
        last_metrics = _log_window(writer, step, pending, elapsed, trainer, schedule, peak_flops)
        pending, window_start = [], time.perf_counter()
        progress.set_postfix(loss=f"{last_metrics['loss']:.4f}")
        warning = model.metrics_warning(step, last_metrics)
        if warning:
          logging.warning("%s", warning)
        if not np.isfinite(last_metrics["loss"]):
          raise TrainingDivergedError(
              f"loss is {last_metrics['loss']} at step {step}; last good checkpoint: step "
              f"{last_good_step} in {checkpointer.directory}; lower the learning rate or check the data")
      if due_checkpoint or stopping:
        if not checkpoints.all_finite(state.params):
          raise TrainingDivergedError(
              f"parameters became NaN/Inf at step {step}; last good checkpoint: step "
              f"{last_good_step} in {checkpointer.directory}; lower the learning rate or check the data")
        checkpointer.save(step, state, batches_consumed)
        last_good_step = step
      if eval_dataset_cfg is not None and eval_period and step % eval_period == 0:
        eval_metrics = evaluate(trainer, state, eval_dataset_cfg, eval_steps, shard_index, num_shards)
        writer.write(step, eval_metrics, prefix="eval")
  if stopping:
    logging.warning("SIGTERM: saved step %d to %s", step, checkpointer.directory)
  return {"step": step, "preempted": stopping, "last_metrics": last_metrics,
          "checkpoint_dir": checkpointer.directory, "metrics_path": writer.jsonl_path,
          "tensorboard_dir": writer.tensorboard_dir}


def evaluate(trainer: Trainer, state, cfg: pipeline.BatchSource, num_batches: int,
             shard_index: int = 0, num_shards: int = 1) -> dict[str, float]:
  """Token-weighted means of eval metrics over the first `num_batches` batches.

  Models that report no `num_tokens` get a plain mean over batches.
  """
  totals: dict[str, float] = {}
  weight = 0.0
  params = state.ema_params if state.ema_params is not None else state.params
  for i, batch in enumerate(cfg.get_batches(shard_index, num_shards)):
    if i == num_batches:
      break
    m = jax.device_get(trainer.eval_step(params, trainer.partitioner.make_global_batch(batch)))
    n = float(m.get("num_tokens", 1.0))
    weight += n
    for k, v in m.items():
      if k != "num_tokens":
        totals[k] = totals.get(k, 0.0) + float(v) * n
  return {k: v / max(weight, 1.0) for k, v in totals.items()}


def _log_window(writer, step, pending, elapsed, trainer, schedule, peak_flops) -> dict[str, float]:
  fetched = jax.device_get(pending)
  means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[-1]}
  tokens_per_step = means.pop("num_tokens", 0.0)
  scalars = dict(means, learning_rate=float(schedule(step - 1)),
                 **metrics_lib.throughput(elapsed / len(fetched), tokens_per_step,
                                          trainer.flops_per_step, peak_flops))
  writer.write(step, scalars)
  return scalars


def _to_global(value, sharding) -> jax.Array:
  """A host array every process holds in full -> a global array (multi-host safe)."""
  if isinstance(value, jax.Array):
    return value
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _prepend(first, rest):
  if first is not None:
    yield first
  yield from rest


def _check_writable(model_dir: str) -> None:
  try:
    directory = paths.resolve(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # One probe per process: hosts of a multi-host run share model_dir.
    probe = directory / f".write_test.{jax.process_index()}.{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise UserError(f"model_dir {model_dir} is not writable ({e.strerror}): choose a folder you can write") from None


class _Preemption:
  """Turns SIGTERM into one step at which every process saves and stops.

  One process: a SIGTERM handler sets a flag that the loop reads after each step.
  Many processes: the signal reaches hosts at different steps, and a host that
  stops alone leaves the others hanging in the next collective or in the
  checkpoint save. JAX's preemption service (started by jax.distributed.initialize;
  it catches SIGTERM itself) tells every process and picks the step after the
  furthest one:
  `reached_preemption_sync_point` is True on all processes at that same step.
  """

  def __init__(self):
    self.stopped = False
    self._previous = None
    self._multihost = jax.process_count() > 1
    # A Python handler would replace the preemption service's own SIGTERM handler.
    if not self._multihost and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.stopped = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step`; call it after every step (all processes)."""
    if self._multihost and not self.stopped:
      self.stopped = multihost_utils.reached_preemption_sync_point(step)
    return self.stopped

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
