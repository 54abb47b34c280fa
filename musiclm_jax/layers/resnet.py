"""ResNet with bottleneck blocks over spectrogram images (MuLan's audio tower).

ResNet-50 is `stage_sizes=(3, 4, 6, 3)`, `width=64`: a 7x7/2 stem, a 3x3/2 max
pool, then stages of 1x1 -> 3x3 -> 1x1 (x4) bottlenecks whose first block
strides by 2 (except stage 1), and a global average pool to 2048 features.

GroupNorm replaces BatchNorm: the trainer keeps only params (no mutable batch
statistics), and in a contrastive model BatchNorm lets the examples of a batch
talk to each other, which the loss can exploit instead of learning features
(MoCo's "shuffling BN" problem). The last norm of every block starts at zero so
each block starts as the identity (Goyal et al., 2017).

Convolution kernels are [height, width, in, out] with logical axes
(conv_height, conv_width, conv_in, conv_out), which no partitioning rule names:
they are replicated, and the audio tower scales by data parallelism.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

KERNEL_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")


def _conv(features: int, size: int, stride: int = 1, name: str | None = None, dtype: Any = jnp.float32):
  init = nn.with_logical_partitioning(nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                                      KERNEL_AXES)
  return nn.Conv(features, (size, size), (stride, stride), padding="SAME", use_bias=False,
                 kernel_init=init, dtype=dtype, name=name)


def _norm(channels: int, max_groups: int, zero_init: bool = False, name: str | None = None):
  groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
  scale = nn.initializers.zeros if zero_init else nn.initializers.ones
  return nn.GroupNorm(num_groups=groups, epsilon=1e-5, name=name,
                      scale_init=nn.with_logical_partitioning(scale, ("conv_out",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)))


class Bottleneck(nn.Module):
  """x [batch, height, width, in] -> [batch, height / stride, width / stride, 4 * width]."""
  width: int
  stride: int
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    out = 4 * self.width
    y = nn.relu(_norm(self.width, self.groups)(_conv(self.width, 1, dtype=self.dtype)(x)))
    y = nn.relu(_norm(self.width, self.groups)(_conv(self.width, 3, self.stride, dtype=self.dtype)(y)))
    y = _norm(out, self.groups, zero_init=True)(_conv(out, 1, dtype=self.dtype)(y))
    if x.shape[-1] != out or self.stride != 1:
      x = _norm(out, self.groups, name="shortcut_norm")(
          _conv(out, 1, self.stride, name="shortcut", dtype=self.dtype)(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A bottleneck ResNet: image [batch, height, width, channels] -> features [batch, 32 * width].

  Attributes:
    stage_sizes: blocks per stage; ResNet-50 is (3, 4, 6, 3).
    width: bottleneck width of the first stage (doubles every stage).
    groups: GroupNorm groups (at most; fewer if a layer has fewer channels).
  """
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  width: int = 64
  groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = _conv(self.width, 7, 2, name="stem", dtype=self.dtype)(x.astype(self.dtype))
    x = nn.relu(_norm(self.width, self.groups, name="stem_norm")(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    for stage, blocks in enumerate(self.stage_sizes):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = Bottleneck(self.width * 2 ** stage, stride, self.groups, self.dtype,
                       name=f"stage{stage}_block{block}")(x)
        x = nn.with_logical_constraint(x, ("batch", None, None, None))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)

  @property
  def num_features(self) -> int:
    return 4 * self.width * 2 ** (len(self.stage_sizes) - 1)
