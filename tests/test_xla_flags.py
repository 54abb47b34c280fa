"""The project's XLA:CPU flags: added before JAX starts, never over a user's own setting."""
import jax
import jax.numpy as jnp

from musiclm_jax import xla_flags


def test_flags_are_appended_and_a_users_own_setting_wins():
  (flag,) = xla_flags.CPU_FLAGS
  option = flag.split("=")[0]
  env = {}
  xla_flags.set_cpu_flags(env)
  assert env["XLA_FLAGS"] == flag
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  xla_flags.set_cpu_flags(env)
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {flag}"
  xla_flags.set_cpu_flags(env)  # twice changes nothing
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {flag}"
  own = f"{option}=LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
  assert xla_flags.with_cpu_flags(own) == own


def test_reductions_are_not_handed_to_ynnpack():
  # conftest sets the flags as the binaries do; by default XLA:CPU compiles this sum over
  # the batch axis (the shape of the shared position bias's gradient) as a YNNPACK fusion.
  summed = jax.jit(lambda x: jnp.sum(x * x, axis=0))
  compiled = summed.lower(jnp.ones((4, 8, 64, 64))).compile().as_text()
  assert "ynn_fusion" not in compiled
