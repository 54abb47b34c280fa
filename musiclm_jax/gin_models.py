"""Models built from gin: the `%MODEL` of gin files, and a trained component from its export.

`build_model` gives tools and benchmarks the `%MODEL` of gin/models/*.gin at
a gin/scales/*.gin. `%MODEL` is built through a public configurable bound to
it (`configured_model`), not gin's private `scoped_configurable_fn`.

An export (musiclm-export) holds params and the training run's config.gin.
The cascade needs several components at once, each trained with its own gin
config that binds the same configurables differently (three stages all bind
`transformer.TransformerConfig`). So each config.gin is parsed alone, in an
isolated gin state, only to build that component's `%MODEL`; the caller's gin
state is restored afterwards.
"""
import contextlib
import copy
from typing import Any, Iterator, Sequence

import flax.linen as nn
import gin
import jax

from musiclm_jax import checkpoints
from musiclm_jax import gin_utils
from musiclm_jax import paths
from musiclm_jax.errors import UserError

_MODEL_BINDING = """
from __gin__ import dynamic_registration
from musiclm_jax import gin_models
gin_models.configured_model.model = %MODEL
"""


def configured_model(model: Any) -> Any:
  """Gin target whose argument is the config's `%MODEL`."""
  return model


@contextlib.contextmanager
def isolated_gin_config() -> Iterator[None]:
  """Runs the body on an empty gin config, then puts the caller's config back."""
  # gin has no public snapshot API; these are the module-level tables that
  # parse_config/clear_config touch.
  state = gin.config
  saved = (copy.copy(state._CONFIG), copy.copy(state._IMPORTS),  # pylint: disable=protected-access
           copy.copy(state._OPERATIVE_CONFIG), state._CONFIG_IS_LOCKED)  # pylint: disable=protected-access
  gin.clear_config()
  try:
    yield
  finally:
    gin.clear_config()
    state._CONFIG.update(saved[0])  # pylint: disable=protected-access
    state._IMPORTS.update(saved[1])  # pylint: disable=protected-access
    state._OPERATIVE_CONFIG.update(saved[2])  # pylint: disable=protected-access
    state._set_config_is_locked(saved[3])  # pylint: disable=protected-access


def parsed_model(source: str = "the gin config",
                 hint: str = "include a gin/models/*.gin file") -> Any:
  """The object the parsed gin config's `%MODEL` names; UserError naming `source` and `hint` if none."""
  try:
    gin.query_parameter("%MODEL")
  except ValueError:
    raise UserError(f"{source} binds no MODEL macro: {hint}") from None
  gin.parse_config(_MODEL_BINDING)
  return gin.get_configurable(configured_model)()


def build_model(gin_files: Sequence[str], gin_bindings: Sequence[str] = ()) -> Any:
  """`%MODEL` of gin files (e.g. models/coarse.gin + scales/paper.gin), parsed on a cleared config.

  The config stays parsed afterwards, so callers can query its other macros.
  """
  gin.clear_config()
  gin_utils.parse_gin(gin_files, gin_bindings)
  return parsed_model(" + ".join(gin_files))


def model_from_export(export_dir: str, expected_type: type | None = None,
                      component: str = "") -> Any:
  """The object `%MODEL` names in EXPORT_DIR/config.gin, built without touching the caller's gin.

  expected_type: if given, a model of another class is a UserError naming
  `component` (e.g. 'MuLan'): the user pointed at another component's export.
  """
  config = paths.join(export_dir, "config.gin")
  if not paths.resolve(config).is_file():
    raise UserError(f"no config.gin in {export_dir}: point at a folder written by musiclm-export")
  with isolated_gin_config():
    gin_utils.parse_gin([config], [])
    model = parsed_model(config, "export a run trained with musiclm-train")
  if expected_type is not None and not isinstance(model, expected_type):
    raise UserError(f"{export_dir} holds a {type(model).__name__}, not {component}: "
                    f"point at the export of a {component} run")
  return model


def load_export(export_dir: str, batch_spec: dict[str, jax.ShapeDtypeStruct],
                model: Any = None) -> tuple[Any, Any]:
  """(model, params) of an export, params on the first local device.

  batch_spec: a small batch of the model's inputs, only to trace `model.init`.
  model: the model object to load into; by default built from the export's config.gin.
  """
  model = model_from_export(export_dir) if model is None else model
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  boxed = jax.eval_shape(model.init, jax.random.key(0), batch_spec)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          nn.unbox(boxed))
  return model, checkpoints.load_exported_params(export_dir, abstract)
