"""XLA:CPU flags the project's programs run with; imports no jax, so it can run before JAX does.

`gin_utils.run` (every binary, and the benchmarks that run through it) sets them first
thing, before JAX starts its backend (its first computation or device query reads XLA_FLAGS).
A flag whose option XLA_FLAGS already sets is left out: the user's own setting wins.
"""
import os

# XLA:CPU hands dots, elementwise fusions and reductions to YNNPACK by default. Its
# reductions ran one fusion of the small semantic stage's step, the gradient of the relative
# position bias all layers share (a sum over batch and layers of the [batch, heads, q, k]
# attention-logit gradients), in 1.2 s of a 6.3 s step. Dots only: step 6.0 -> 4.4 s, MFU
# 0.53 -> 0.72 (benchmarks/train_throughput.py --scale=small, back to back, load 3.8);
# decoding and the codec within noise.
CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",)


def _option(flag: str) -> str:
  return flag.split("=", 1)[0]


def with_cpu_flags(xla_flags: str) -> str:
  """`xla_flags` plus each of CPU_FLAGS whose option it does not set already."""
  present = {_option(flag) for flag in xla_flags.split()}
  return " ".join(xla_flags.split() + [f for f in CPU_FLAGS if _option(f) not in present])


def set_cpu_flags(environ=os.environ) -> None:
  """Adds CPU_FLAGS to environ['XLA_FLAGS']; call before JAX initialises its backend."""
  environ["XLA_FLAGS"] = with_cpu_flags(environ.get("XLA_FLAGS", ""))
