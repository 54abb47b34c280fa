"""Test helpers: parameters drawn with numpy, and random token streams.

Compiling the real initialisers costs ~1 s per random op on a small CPU;
tests that only need reasonable values draw them with numpy instead.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def draw_params(abstract_boxed, seed: int = 0, keep_boxes: bool = False):
  """Values for the boxed ShapeDtypeStructs of `jax.eval_shape(init, ...)`.

  Norm scales are drawn near 1, other weights with a fan-in scaled normal.
  """
  rng = np.random.default_rng(seed)

  def draw(path, box):
    shape = box.value.shape
    if path[-1].key == "scale":
      value = 1.0 + 0.1 * rng.normal(size=shape)
    else:
      value = rng.normal(size=shape) / np.sqrt(shape[-2] if len(shape) > 1 else 1)
    value = jnp.asarray(value, box.value.dtype)
    return box.replace_boxed(value) if keep_boxes else value

  return jax.tree_util.tree_map_with_path(
      draw, abstract_boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def model_params(model, length: int = 8, seed: int = 0):
  """Unboxed numpy-drawn params for a BaseModel whose inputs are [1, length] tokens."""
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, length), np.int32)}
  return draw_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), spec), seed)


def random_stream(layout, kind: str, frames: int, seed: int) -> np.ndarray:
  """[frames * levels] ids of `kind`: random codes encoded time-major by the layout."""
  codes = np.random.default_rng(seed).integers(
      0, layout.kind(kind).codebook_size, size=(frames, layout.kind(kind).num_levels))
  return layout.encode_stream(kind, codes)
