"""The environment of a compile-only process: set before jax starts, so this module imports no jax.

Simulated CPU devices for `aot_compile` without --topology; for TPU topologies
(libtpu, no TPU attached) no metadata server to ask and no TPU lock to take.
"""
import os


def set_up(num_devices: int | str, tpu_topology: bool) -> None:
  """Fixes the backend's environment; call before jax initialises (e.g. before importing it)."""
  flag = f"--xla_force_host_platform_device_count={num_devices}"
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [flag])
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  if tpu_topology:
    # Compile only: no metadata server to ask, and no TPU whose lock other processes could hold.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
