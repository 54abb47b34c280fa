"""Orbax checkpoints: training state, input position, and exported params.

A training checkpoint holds three items: `state` (step, params, optimizer
state, EMA), `data` (how many batches the input pipeline has served) and
`meta` (the parameter shapes, so a checkpoint from a different model is
refused with a clear message rather than an orbax stack trace).

Restoring takes the newest step that restores and holds only finite numbers
(as T5X restores the latest good step); a step that fails is renamed to
`<step>.corrupt-<time>` (orbax ignores that name) and kept for inspection.
"""
import functools
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import orbax.checkpoint as ocp
# orbax's default jax.Array handler is built with this store; ours must match it.
from orbax.checkpoint._src.metadata import array_metadata_store

from musiclm_jax import paths
from musiclm_jax.errors import UserError

EXPORT_PARAMS_DIR = "params"


def param_shapes(params: Any) -> dict[str, list[int]]:
  """{'/'-joined path: shape} for every leaf of a params tree."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(_key_name(k) for k in path): list(leaf.shape) for path, leaf in flat}


def check_compatible(saved: dict[str, list[int]], expected: dict[str, list[int]], where: str) -> None:
  """Raises a one-line UserError naming the first parameter that differs."""
  if saved == expected:
    return
  for name in sorted(set(saved) | set(expected)):
    if saved.get(name) != expected.get(name):
      raise UserError(
          f"checkpoint {where} is from a different model: parameter {name!r} has shape "
          f"{saved.get(name, 'absent')} there but {expected.get(name, 'absent')} in this config; "
          f"use a fresh model_dir or the config that wrote it")


@functools.cache
def _save_each_array_from_one_replica() -> None:
  """On CPU, orbax writes a replicated array from one replica, not split across replicas.

  Registered once per process: the handler is global to orbax.

  Its default copies a replicated array to the host in slices, one per replica,
  to share the transfer out among accelerators; each slice is a device program
  compiled per shape. CPU devices share the host's memory, so that only costs:
  on 8 CPU devices (the tests' mesh) a tiny SoundStream's save took 38 s of
  compiles, and 0.85 s on one device. orbax already does this on GPU.
  """
  if jax.default_backend() == "cpu":
    ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
        use_replica_parallel=False, array_metadata_store=array_metadata_store.Store()),
                                            override=True)


class Checkpointer:
  """Keeps the last `keep` checkpoints of a run; saves when told to."""

  def __init__(self, directory: str, keep: int | None = 3, async_save: bool = True):
    _save_each_array_from_one_replica()
    self.directory = paths.join(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                           create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, batches_consumed: int) -> None:
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave({"batches_consumed": int(batches_consumed)}),
            meta=ocp.args.JsonSave({"param_shapes": param_shapes(state.params)})),
        force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, int]:
    """Restores onto the shardings in `abstract_state` (ShapeDtypeStructs).

    Returns (state, batches_consumed).
    """
    where = paths.join(self.directory, str(step))
    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    check_compatible(meta["param_shapes"], param_shapes(abstract_state.params), where)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    return restored["state"], restored["data"]["batches_consumed"]

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, int] | None:
    """(step, state, batches_consumed) of the newest intact checkpoint; None if there is none.

    A step that does not restore, or restores NaN/Inf, is set aside with a
    one-line warning and the step before it is tried. A checkpoint of another
    model is a UserError: every step of it would be.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, batches_consumed = self.restore(step, abstract_state)
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except  # orbax, TensorStore, JSON, KeyError...
        problem = f"does not restore ({type(e).__name__}: {_first_line(e)})"
      else:
        if all_finite(state):
          return step, state, batches_consumed
        problem = "holds NaN or Inf"
      aside = self._set_aside(step)
      logging.warning("checkpoint step %d %s; moved it to %s and trying the step before", step,
                      problem, aside)
    return None

  def _set_aside(self, step: int) -> str:
    """Renames a bad step out of orbax's sight (never deletes it); returns the new path."""
    aside = paths.join(self.directory, f"{step}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0:
      paths.resolve(self.directory).joinpath(str(step)).rename(aside)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    self._manager.reload()
    return aside

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


@jax.jit
def all_finite(tree) -> jax.Array:
  """Whether every float leaf of `tree` is free of NaN and Inf."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.bool_(True)


def export_params(params: Any, export_dir: str, dtype: str | None = None,
                  gin_config_path: str | None = None) -> str:
  """Writes an inference checkpoint: params only (optionally cast) + config.gin."""
  if dtype:
    cast = jnp.dtype(dtype)
    params = jax.tree.map(lambda x: x.astype(cast) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                          params)
  path = paths.join(export_dir, EXPORT_PARAMS_DIR)
  if paths.resolve(path).exists():
    raise UserError(f"export folder {path} already exists: choose another output_dir or delete it")
  if gin_config_path:
    # config.gin first and whole (copied, then renamed): an export cut short by a full
    # disk then lacks params/ (orbax writes it atomically) and is refused when loaded.
    config = paths.resolve(export_dir) / "config.gin"
    config.parent.mkdir(parents=True, exist_ok=True)
    draft = config.with_name("config.gin.tmp")
    paths.resolve(gin_config_path).copy(draft, overwrite=True)
    draft.replace(config)
  _save_each_array_from_one_replica()
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, params)
  checkpointer.wait_until_finished()
  return path


def export_checkpoint(*, model_dir: str, output_dir: str, step: int | None = None,
                      dtype: str | None = None, use_ema: bool = False) -> str:
  """Entry point of musiclm-export: a training checkpoint → an inference one.

  Reads step `step` (default: the latest that restores intact; a bad one is
  skipped with a warning, not moved: export only reads) of
  MODEL_DIR/checkpoints and writes its params (or their EMA) plus
  MODEL_DIR/config.gin to `output_dir`; the model's shapes are checked when
  the export is loaded. Returns the params path.
  """
  directory = paths.join(model_dir, "checkpoints")
  if not paths.resolve(directory).is_dir():
    raise UserError(f"no checkpoints in {directory}: train with musiclm-train first or fix MODEL_DIR")
  manager = ocp.CheckpointManager(directory, item_names=("state", "data", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  if step is not None and step not in manager.all_steps():
    raise UserError(f"no checkpoint for step {step} in {directory}: steps there are {manager.all_steps()}")
  candidates = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
  for candidate in candidates:
    try:
      state = manager.restore(candidate, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    except Exception as e:  # pylint: disable=broad-except  # orbax, TensorStore, JSON, KeyError...
      problem = f"does not restore ({type(e).__name__}: {_first_line(e)})"
    else:
      if all_finite(state):
        break
      problem = "holds NaN or Inf"
    if step is not None:
      raise UserError(f"checkpoint {directory}/{step} {problem}: export another step")
    logging.warning("checkpoint step %d %s; trying the step before", candidate, problem)
  else:
    raise UserError(f"no checkpoint in {directory} restores intact: train again (steps there: "
                    f"{manager.all_steps()})")
  step = candidate
  params = state["ema_params"] if use_ema else state["params"]
  if params is None:
    raise UserError(f"checkpoint {directory}/{step} has no EMA params: export with use_ema=False")
  config = paths.resolve(model_dir) / "config.gin"
  return export_params(params, output_dir, dtype, str(config) if config.exists() else None)


def load_exported_params(export_dir: str, abstract_params: Any) -> Any:
  """Loads params written by `export_params` onto `abstract_params`' shardings.

  abstract_params: ShapeDtypeStructs; each leaf's dtype is the one returned.
  """
  path = paths.join(export_dir, EXPORT_PARAMS_DIR)
  if not paths.resolve(path).is_dir():
    raise UserError(f"no exported checkpoint at {path}: run musiclm-export first")
  checkpointer = ocp.StandardCheckpointer()
  saved_tree = checkpointer.metadata(path).item_metadata.tree
  check_compatible(param_shapes(saved_tree), param_shapes(abstract_params), path)
  on_disk = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, s.dtype, sharding=a.sharding),
                         abstract_params, saved_tree)
  params = checkpointer.restore(path, on_disk)
  return jax.tree.map(lambda x, a: x.astype(a.dtype), params, abstract_params)


def _first_line(e: BaseException) -> str:
  return (str(e).strip().splitlines() or [""])[0][:200]


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)
