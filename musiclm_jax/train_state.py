"""Training state: step, params, optimizer state and an optional params EMA."""
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to resume training exactly.

  `ema_params` is None when no EMA is kept; `tx` and `ema_decay` are static.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  ema_decay: float | None = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation,
             ema_decay: float | None = None) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               ema_params=params if ema_decay else None, tx=tx, ema_decay=ema_decay)

  def apply_gradients(self, grads) -> "TrainState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema = self.ema_params
    if self.ema_decay:
      d = self.ema_decay
      ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema)


def logical_specs(boxed_params, tx: optax.GradientTransformation,
                  ema_decay: float | None) -> TrainState:
  """Logical PartitionSpecs for every leaf of the state built from these params.

  Optimizer leaves shaped like their parameter share its spec; others (step
  counts, Adafactor's factored row/column moments) are replicated: small.
  Subtrees that `optax.multi_transform` masks out of a state stay masked.
  """
  param_specs = nn.get_partition_spec(boxed_params)
  params = nn.unbox(boxed_params)
  abstract_opt_state = jax.eval_shape(tx.init, params)

  def spec_for(leaf, param, spec):
    if isinstance(leaf, optax.MaskedNode):
      return leaf
    return spec if getattr(leaf, "shape", None) == param.shape else P()

  opt_specs = optax.tree_map_params(
      tx, spec_for, abstract_opt_state, params, param_specs,
      transform_non_params=lambda _: P(),
      is_leaf=lambda x: isinstance(x, (P, optax.MaskedNode)))
  return TrainState(step=P(), params=param_specs, opt_state=opt_specs,
                    ema_params=param_specs if ema_decay else None, tx=tx, ema_decay=ema_decay)
