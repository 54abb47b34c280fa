"""Parameter initialisers that carry logical axis names (one per kernel axis)."""
import flax.linen as nn


def fan_in(names: tuple[str, ...], *, in_axis, out_axis, scale: float = 1.0):
  """Truncated-normal variance scaling by fan-in (T5X's default for kernels).

  `in_axis`/`out_axis` may be tuples for multi-axis kernels such as
  [embed, heads, kv], so fan-in is computed over the contracted axes only.
  """
  return nn.with_logical_partitioning(
      nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal",
                                       in_axis=in_axis, out_axis=out_axis),
      names)
