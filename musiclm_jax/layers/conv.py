"""1-D convolutions for waveform codecs: causal or centred padding, optional weight norm.

Padding follows EnCodec's SEANet so that an input whose length is a multiple
of the total stride gives exactly `length / stride` frames, and a transposed
convolution gives exactly `frames * stride` samples back:
  conv:       pad (kernel - 1) * dilation - (stride - 1) in total, all on the
              left when causal, split (left gets the extra sample) otherwise;
  transposed: trim kernel - stride in total, all on the right when causal,
              split otherwise.
Kernels are [width, in, out] with logical axes (conv_width, conv_in, conv_out);
no partitioning rule names them, so they are replicated: codecs are small and
data parallelism over `batch` is what matters.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL_AXES = ("conv_width", "conv_in", "conv_out")
_DIMENSIONS = ("NWC", "WIO", "NWC")


def _kernel(module: nn.Module, shape: tuple[int, int, int], weight_norm: bool,
            param_dtype: Any, fan_in_axes: tuple[int, ...]) -> jax.Array:
  """A kernel, as a plain parameter or as gain * direction / |direction| (weight norm).

  The norm is taken per output channel over `fan_in_axes`.
  """
  init = nn.with_logical_partitioning(
      nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                       in_axis=fan_in_axes, out_axis=-1), KERNEL_AXES)
  direction = module.param("kernel", init, shape, param_dtype)
  if not weight_norm:
    return direction
  norm = jnp.sqrt(jnp.sum(jnp.square(direction), axis=fan_in_axes, keepdims=True))
  # Starting with gain = |direction| makes the initial kernel equal the plain one.
  gain = module.param("gain", nn.with_logical_partitioning(lambda *_: norm, (None, None, "conv_out")),
                      norm.shape, param_dtype)
  return gain * direction / jnp.maximum(norm, 1e-12)


def _bias(module: nn.Module, features: int, param_dtype: Any) -> jax.Array:
  return module.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                      (features,), param_dtype)


class Conv1d(nn.Module):
  """x: [batch, time, in] -> [batch, ceil(time / stride), features]."""
  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  causal: bool = False
  weight_norm: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (self.kernel_size, x.shape[-1], self.features)
    kernel = _kernel(self, shape, self.weight_norm, self.param_dtype, (0, 1))
    effective_kernel = (self.kernel_size - 1) * self.dilation + 1
    total = effective_kernel - self.stride
    # Extra right padding completes the last frame when time is not a multiple of stride.
    frames = -(-x.shape[1] // self.stride)
    extra = (frames - 1) * self.stride + effective_kernel - (x.shape[1] + total)
    left = total if self.causal else total - total // 2
    x = jnp.pad(x, ((0, 0), (left, total - left + max(extra, 0)), (0, 0)))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.stride > 1 and self.kernel_size % self.stride == 0 and self.dilation == 1:
      y = _space_to_depth_conv(x, kernel, self.stride)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, window_strides=(self.stride,), padding="VALID",
                                       rhs_dilation=(self.dilation,), dimension_numbers=_DIMENSIONS)
    return y + _bias(self, self.features, self.param_dtype).astype(self.dtype)


class ConvTranspose1d(nn.Module):
  """x: [batch, frames, in] -> [batch, frames * stride, features]."""
  features: int
  kernel_size: int
  stride: int
  causal: bool = False
  weight_norm: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kernel_size % self.stride:
      raise ValueError(f"kernel_size {self.kernel_size} must be a multiple of stride {self.stride}")
    shape = (self.kernel_size, x.shape[-1], self.features)
    kernel = _kernel(self, shape, self.weight_norm, self.param_dtype, (0, 1))
    y = _subpixel_transpose(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
    total = self.kernel_size - self.stride
    right = total if self.causal else total // 2
    y = y[:, total - right:y.shape[1] - right]
    return y + _bias(self, self.features, self.param_dtype).astype(self.dtype)


def _space_to_depth_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """A strided VALID conv as a dense one over frames of `stride` samples.

  The gradient of a strided conv is an input-dilated conv, which XLA:CPU
  compiles and runs slowly; folding each stride of samples into channels
  leaves only dense convs. x: [batch, time, in] with time a multiple of
  stride (the padding above guarantees it), kernel: [taps * stride, in, out].
  """
  batch, time, features_in = x.shape
  width, _, features_out = kernel.shape
  x = x[:, :time - time % stride].reshape(batch, time // stride, stride * features_in)
  kernel = kernel.reshape(width // stride, stride * features_in, features_out)
  return jax.lax.conv_general_dilated(x, kernel, (1,), "VALID", dimension_numbers=_DIMENSIONS)


def _subpixel_transpose(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The transposed conv y[t * stride + i] += x[t] · kernel[i] (PyTorch's ConvTranspose1d).

  Done as a plain conv and a reshape: XLA:CPU runs the input-dilated
  convolution of lax.conv_transpose (and its gradient) several times slower
  than a dense one. With kernel = taps * stride,
  output sample n * stride + r is the sum over j < taps of x[n - j] · kernel[j * stride + r],
  i.e. a `taps`-wide conv with stride * out channels, then phases interleaved.
  x: [batch, frames, in], kernel: [taps * stride, in, out] ->
  [batch, (frames + taps - 1) * stride, out].
  """
  width, features_in, features_out = kernel.shape
  taps = width // stride
  # Tap j acts on x[n - j]: reverse the taps so a forward conv visits them in order.
  phases = kernel.reshape(taps, stride, features_in, features_out)[::-1]
  phases = phases.transpose(0, 2, 1, 3).reshape(taps, features_in, stride * features_out)
  x = jnp.pad(x, ((0, 0), (taps - 1, taps - 1), (0, 0)))
  y = jax.lax.conv_general_dilated(x, phases, (1,), "VALID", dimension_numbers=_DIMENSIONS)
  return y.reshape(y.shape[0], y.shape[1] * stride, features_out)
