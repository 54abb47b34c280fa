"""The contract between a model and the trainer (T5X's BaseModel, trimmed).

A model is a plain Python object around a Flax module. The trainer never looks
inside it: it asks for parameters, a loss, and (for MFU) an analytic FLOP count.
Parameters are created with logical axis names (`nn.with_logical_partitioning`)
so that `partitioning.py` alone decides how they map onto the mesh.

Batches are dicts of arrays whose leading axis is `batch`. Decoder-only models
use SeqIO's DecoderFeatureConverter names:
  decoder_input_tokens   [batch, length] int32
  decoder_target_tokens  [batch, length] int32
  decoder_loss_weights   [batch, length] float32 or int32
"""
import abc
from typing import Any, Mapping

import jax

Batch = Mapping[str, jax.Array]
BatchSpec = Mapping[str, jax.ShapeDtypeStruct]
Params = Any
Metrics = Mapping[str, jax.Array]


class BaseModel(abc.ABC):
  """What every trainable model gives the trainer."""

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch_spec: BatchSpec) -> Params:
    """Returns the parameter pytree, leaves boxed with logical axis names.

    Must be traceable under `jax.eval_shape` so that the trainer can derive
    shardings before allocating anything.
    """

  def load_pretrained(self, params: Params) -> Params:
    """Optional: the initialised params (unboxed) with pre-trained weights put in.

    The trainer calls it on the host after the jitted `init` (big_vision's
    `load`), so a checkpoint never becomes a constant of the compiled init
    program. Returned leaves may be numpy arrays. Default: params unchanged.
    """
    return params

  @abc.abstractmethod
  def loss_fn(self, params: Params, batch: Batch,
              rng: jax.Array | None) -> tuple[jax.Array, Metrics]:
    """Returns (scalar loss, metrics). `rng=None` means deterministic (eval).

    Metrics are scalars already reduced over the batch (means), except
    `num_tokens`, the count of tokens that carry loss. A model that reports it
    must normalise by it: loss and metrics are sums over those tokens divided
    by max(num_tokens, 1). The trainer then weights micro-batches (gradient
    accumulation) and eval batches by it, and reports tokens/s. Models
    without it get plain means over micro-batches and eval batches.
    """

  def train_step(self, state: Any, batch: Batch, rng: jax.Array) -> tuple[Any, Metrics] | None:
    """Optional: a model's own update, for models one gradient step cannot train.

    A GAN (generator and discriminator on separate optimizers, e.g. an
    `optax.multi_transform` keyed on the top-level params) or a model with
    non-gradient state (EMA codebooks kept in `params` under a label the
    optimizer leaves untouched) returns `(new_state, metrics)` here, where
    `state` is a `train_state.TrainState`. Returning None (the default) means
    "use the trainer's step": gradients of `loss_fn`, clipping, accumulation.
    The trainer still jits, shards, checkpoints and logs either way.
    """
    del state, batch, rng
    return None

  def metrics_warning(self, step: int, metrics: Mapping[str, float]) -> str | None:
    """Optional: a one-line warning when the logged train metrics (means over a log
    window, unprefixed names) show a failure training will not undo, e.g. a codec whose
    codebooks collapsed. The trainer logs it at every log window where it holds.
    Default: None (no check).
    """
    del step, metrics
    return None

  def flops_per_batch(self, batch_spec: BatchSpec) -> float:
    """Analytic FLOPs of one forward+backward pass over a batch of this shape.

    Used for MFU. Models that do not know it return 0 and MFU is not reported.
    """
    del batch_spec
    return 0.0

  def predict_batch(self, params: Params, batch: Batch, rng: jax.Array,
                    **kwargs) -> jax.Array:
    """Samples outputs for a batch. Only models that generate implement it."""
    raise TypeError(f"{type(self).__name__} does not generate; it has no predict_batch.")
