"""Training metrics: throughput, FLOPs and MFU; written to JSONL and TensorBoard.

MFU is achieved FLOP/s (from the model's analytic count for the global batch)
over the peak of all the devices the run uses, on every host. Accelerators use
published peaks; a CPU's peak is measured once with a large float32 matmul and
cached, since it depends on the host.
"""
import json
import os
import time
from typing import Iterable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import paths

_PEAK_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "musiclm_jax", "peak_flops.json")

# Dense (no sparsity) bf16 peak FLOP/s per chip, from the vendors' public spec
# sheets: Cloud TPU system architecture pages for v4 (275 TFLOP/s), v5e (197),
# v5p (459) and v6e/Trillium (918); NVIDIA's A100 datasheet (312, SXM and
# PCIe) and H100 datasheet (989 SXM, 756 PCIe). JAX's device_kind names v5e
# "TPU v5 lite", v5p "TPU v5" and v6e "TPU v6 lite". The first entry whose
# text occurs in the device kind wins, so the more specific come first.
_PEAK_FLOPS_PER_DEVICE = (
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v6 lite", 918e12),
    ("TPU v6e", 918e12),
    ("A100", 312e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
)
_UNKNOWN_KINDS_REPORTED: set[str] = set()


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


def published_peak_flops(device_kind: str) -> float | None:
  """Dense bf16 peak FLOP/s of one device of this kind, or None if the table lacks it."""
  return next((peak for name, peak in _PEAK_FLOPS_PER_DEVICE if name in device_kind), None)


def peak_flops(devices: Iterable[jax.Device], peak_flops_per_device: float | None = None) -> float:
  """Peak FLOP/s of `devices` together, on all hosts (0 if unknown: MFU is then not reported).

  peak_flops_per_device: overrides the published table (e.g. for a device
  kind it lacks). Without it, on CPU simulated devices share their host's
  cores, so each host's measured matmul peak is its whole budget, whatever
  its device count. An unknown accelerator is logged once.
  """
  devices = list(devices)
  if peak_flops_per_device is not None:
    return peak_flops_per_device * len(devices)
  if devices[0].platform == "cpu":
    return _cpu_host_peak_flops() * len({d.process_index for d in devices})
  kind = devices[0].device_kind
  per_device = published_peak_flops(kind)
  if per_device is None:
    if kind not in _UNKNOWN_KINDS_REPORTED:
      _UNKNOWN_KINDS_REPORTED.add(kind)
      logging.warning("no published peak FLOP/s for device kind %r, so MFU is not reported: set "
                      "trainer.train.peak_flops_per_device (--gin.trainer.train."
                      "peak_flops_per_device=...)", kind)
    return 0.0
  return per_device * len(devices)


def _cpu_host_peak_flops() -> float:
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
  """Rates of one step of the global batch (all hosts together).

  tokens_per_step and flops_per_step count the global batch and peak_flops is
  that of all devices in use. MFU is left out when FLOPs or the peak are unknown.
  """
  out = {"step_seconds": step_seconds,
         "tokens_per_second": tokens_per_step / step_seconds}
  if flops_per_step and peak_flops:
    out["tflops_per_second"] = flops_per_step / step_seconds / 1e12
    out["mfu"] = flops_per_step / step_seconds / peak_flops
  return out


def expected_step_seconds(flops_per_step: float, peak_flops: float, mfu: float) -> float:
  """Seconds a step of `flops_per_step` takes on devices of `peak_flops` together at `mfu`
  (the definition of MFU in `throughput`, solved for the step time), to 3 significant figures."""
  return float(f"{flops_per_step / (mfu * peak_flops):.3g}")


class MetricsWriter:
  """Appends scalars to MODEL_DIR/metrics.jsonl and TensorBoard event files.

  Only process 0 writes, so multi-host runs produce one record per step.
  """

  def __init__(self, model_dir: str, tensorboard: bool = True):
    self._active = jax.process_index() == 0
    self.jsonl_path = paths.join(model_dir, "metrics.jsonl")
    self.tensorboard_dir = paths.join(model_dir, "tensorboard")
    self._summary = None
    if self._active and tensorboard:
      import tensorflow as tf  # Heavy; only the writing process needs it.
      self._tf = tf
      self._summary = tf.summary.create_file_writer(self.tensorboard_dir)

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "train") -> None:
    if not self._active:
      return
    record = {"step": int(step), **{f"{prefix}/{k}": _to_float(v) for k, v in scalars.items()}}
    with paths.resolve(self.jsonl_path).open("a") as f:
      f.write(json.dumps(record) + "\n")
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        for k, v in record.items():
          if k != "step":
            self._tf.summary.scalar(k, v)

  def truncate_after(self, step: int) -> None:
    """Drops records past `step` (and a line cut short), so a resumed run logs each step once."""
    jsonl = paths.resolve(self.jsonl_path)
    if not self._active or not jsonl.exists():
      return
    lines = jsonl.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _record_step(line) is not None and _record_step(line) <= step]
    if kept != lines:
      draft = jsonl.with_name(jsonl.name + ".tmp")
      draft.write_text("".join(kept))
      draft.replace(jsonl)

  def flush(self) -> None:
    if self._summary is not None:
      self._summary.flush()


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _record_step(line: str) -> int | None:
  """The step of one metrics.jsonl line; None if it is not a whole record."""
  try:
    return int(json.loads(line)["step"]) if line.endswith("\n") else None
  except (ValueError, KeyError, TypeError):
    return None


def _to_float(v) -> float:
  return float(np.asarray(v))


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}
