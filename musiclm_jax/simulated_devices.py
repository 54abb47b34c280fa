"""XLA flags for several simulated devices on one CPU; imports no jax, so it can run before it.

Used wherever devices are simulated to test sharding (tests/conftest.py, the two-process
test worker, launch/local_multihost.sh repeats the flags in bash).
"""

# XLA:CPU's default concurrency-optimized (breadth-first) scheduler deadlocked a sharded step:
# on 8 simulated devices (mesh data 4 x model 2) the devices entered different collectives of
# one step (gdb: 6 in a collective-permute, 2 in all-reduces of model-axis pairs) and waited on
# each other forever. The coarse stage's step hung within 2-33 steps in 4 tries with it, and
# ran 1000 steps with the depth-first scheduler this flag selects
# (benchmarks/cpu_collective_deadlock.py). Other projects report the same at >= 8 CPU devices.
_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def xla_flags(num_devices: int) -> str:
  """XLA_FLAGS giving `num_devices` CPU devices whose collectives run in one order.

  Set them in the environment before JAX starts its backend.
  """
  return f"--xla_force_host_platform_device_count={num_devices} {_SCHEDULER_FLAG}"
