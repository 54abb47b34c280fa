"""What the tools know of TPU chips: each generation's HBM, its megacore pairing, rental names.

One place for the facts `aot_compile` compiles against and `memory_table` prints, and for
reading a generation out of a topology name ('v5e' of 'v5e:4x4').
"""
import math

from musiclm_jax.errors import UserError

# HBM per chip as the TPU compiler counts it (programs beyond it are refused).
HBM_GIB = {"v4": 30.75, "v5e": 15.75, "v5p": 95.74, "v6e": 31.25}
# Generations whose chips pair two TensorCores into one device.
MEGACORE_GENERATIONS = ("v4", "v5p")
# The names TPU slices are rented by.
TOPOLOGY_NAMES = {"v5e:4x4": "v5e-16", "v4:2x2x4": "v4-32", "v5p:2x2x1": "v5p-8"}


def generation(topology: str) -> str:
  """The chip generation of a topology such as 'v5e:4x4' (-> 'v5e'); one of HBM_GIB's."""
  name = topology.split(":")[0]
  if name not in HBM_GIB:
    raise UserError(f"unknown TPU generation in topology {topology}: use one of "
                    f"{', '.join(HBM_GIB)}, e.g. v5e:4x4")
  return name


def num_chips(topology: str, num_slices: int = 1) -> int:
  """Chips of `num_slices` slices of a topology such as 'v4:2x2x4' (-> 16): its devices, as every
  generation here is one device per chip (v4 and v5p pair their TensorCores: megacore)."""
  generation(topology)
  try:
    dims = [int(d) for d in topology.split(":", 1)[1].split("x")]
  except (IndexError, ValueError):
    raise UserError(f"cannot read the chip grid of topology {topology}: write it like "
                    "v5e:4x4 or v4:2x2x4") from None
  return num_slices * math.prod(dims)


def hbm_gib(topology: str) -> float:
  """HBM per chip of a topology's generation."""
  return HBM_GIB[generation(topology)]
