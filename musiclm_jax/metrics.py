"""Training metrics: throughput, FLOPs and MFU; written to JSONL and TensorBoard.

MFU is achieved FLOP/s (from the model's analytic count) over the peak of the
devices in use. Accelerators use published peaks; a CPU's peak is measured
once with a large float32 matmul and cached, since it depends on the host.
"""
import json
import os
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

_PEAK_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "musiclm_jax", "peak_flops.json")

# Dense bf16 peak FLOP/s per device (vendor figures).
_PUBLISHED_PEAKS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA H100 80GB HBM3": 989e12,
}


def published_peak_flops(device_kind: str) -> float:
  """A device's dense bf16 peak FLOP/s from its vendor's figures; 0 when unknown."""
  return _PUBLISHED_PEAKS.get(device_kind, 0.0)


def measure_matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
  """Best FLOP/s of a [size, size] float32 matmul on the default backend."""
  a = jnp.ones((size, size), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


def host_peak_flops() -> float:
  """Peak FLOP/s of all local devices together.

  On CPU, simulated devices share the host's cores, so the host's measured
  matmul peak is the whole budget, whatever the device count.
  """
  device = jax.local_devices()[0]
  if device.platform != "cpu":
    return published_peak_flops(device.device_kind) * jax.local_device_count()
  key = f"cpu:{os.cpu_count()}:{jax.__version__}"
  cache = _read_json(_PEAK_CACHE)
  if key not in cache:
    cache[key] = measure_matmul_peak_flops()
    os.makedirs(os.path.dirname(_PEAK_CACHE), exist_ok=True)
    with open(_PEAK_CACHE, "w") as f:
      json.dump(cache, f)
  return cache[key]


def throughput(step_seconds: float, tokens_per_step: float, flops_per_step: float,
               peak_flops: float) -> dict[str, float]:
  """Per-host rates for one step. MFU is 0 when FLOPs or the peak are unknown."""
  out = {"step_seconds": step_seconds,
         "tokens_per_second": tokens_per_step / step_seconds}
  if flops_per_step and peak_flops:
    out["tflops_per_second"] = flops_per_step / step_seconds / 1e12
    out["mfu"] = flops_per_step / step_seconds / peak_flops
  return out


class MetricsWriter:
  """Appends scalars to MODEL_DIR/metrics.jsonl and TensorBoard event files.

  Only process 0 writes, so multi-host runs produce one record per step.
  """

  def __init__(self, model_dir: str, tensorboard: bool = True):
    self._active = jax.process_index() == 0
    self.jsonl_path = os.path.join(model_dir, "metrics.jsonl")
    self.tensorboard_dir = os.path.join(model_dir, "tensorboard")
    self._summary = None
    if self._active and tensorboard:
      import tensorflow as tf  # Heavy; only the writing process needs it.
      self._tf = tf
      self._summary = tf.summary.create_file_writer(self.tensorboard_dir)

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "train") -> None:
    if not self._active:
      return
    record = {"step": int(step), **{f"{prefix}/{k}": _to_float(v) for k, v in scalars.items()}}
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        for k, v in record.items():
          if k != "step":
            self._tf.summary.scalar(k, v)

  def flush(self) -> None:
    if self._summary is not None:
      self._summary.flush()


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _to_float(v) -> float:
  return float(np.asarray(v))


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}
