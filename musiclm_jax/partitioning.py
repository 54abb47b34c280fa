"""Maps logical axis names onto a (data, model) device mesh (T5X's partitioner).

Models name their axes (`batch`, `embed`, `mlp`, ...); only this module knows
how those names land on devices. Rules are pairs (logical name, mesh axis or
None) and can be overridden from gin. Every name a parameter uses needs a
rule: an unknown one is an error rather than a silently replicated tensor.
"""
import contextlib
import dataclasses
import os
from typing import Any, Callable, Sequence

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import numpy as np

from musiclm_jax.errors import UserError

DATA_AXIS = "data"
MODEL_AXIS = "model"

LogicalRules = Sequence[tuple[str, str | None]]

DEFAULT_LOGICAL_AXIS_RULES: LogicalRules = (
    ("batch", DATA_AXIS),
    ("mlp", MODEL_AXIS),
    ("heads", MODEL_AXIS),
    ("vocab", MODEL_AXIS),
    ("embed", None),
    ("length", None),
    ("kv", None),
    ("layers", None),
    ("relpos_buckets", None),
    # Convolution kernels (ResNet, SoundStream, discriminators, w2v-BERT's
    # feature encoder) and w2v-BERT's quantizer (codebooks, code logits,
    # codevector projections) are small next to the Transformers: replicated.
    ("conv_height", None),
    ("conv_width", None),
    ("conv_in", None),
    ("conv_out", None),
    ("conv_features", None),
    ("codebook_groups", None),
    ("codebook", None),
    ("codevector", None),
    ("codevector_out", None),
)


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None,
                                 auto_detect: bool = False,
                                 initialization_timeout_seconds: int = 300) -> None:
  """Joins a multi-process run when one is configured, else does nothing.

  Arguments left None are detected by JAX on TPU pods, SLURM, Open MPI and
  Kubernetes; `auto_detect` joins on that detection alone (the launch/ scripts
  pass it). Elsewhere set JAX_COORDINATOR_ADDRESS or pass the address.
  `initialization_timeout_seconds` bounds the wait for every process: cold
  starts of large slices take far longer than JAX's default 5 minutes.
  """
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not (auto_detect or address or num_processes or process_id is not None):
    return
  jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                             process_id=process_id,
                             initialization_timeout=initialization_timeout_seconds)
  logging.info("process %d of %d joined", jax.process_index(), jax.process_count())


@dataclasses.dataclass
class Partitioner:
  """Builds the mesh and turns logical axes into shardings.

  Attributes:
    model_parallel: size of the `model` mesh axis; the rest of the devices form
      the `data` axis.
    logical_axis_rules: (logical name, mesh axis or None) pairs.
    num_devices: use only the first N devices (default: all of them).
    devices: the devices to lay the mesh over (default: `jax.devices()`), e.g. a
      TPU topology's for ahead-of-time compiles on a machine without TPUs.
  """
  model_parallel: int = 1
  logical_axis_rules: LogicalRules = DEFAULT_LOGICAL_AXIS_RULES
  num_devices: int | None = None
  devices: Sequence[Any] | None = None

  def __post_init__(self):
    devices = list(self.devices if self.devices is not None else jax.devices())[:self.num_devices]
    if self.model_parallel < 1 or len(devices) % self.model_parallel:
      raise UserError(f"model_parallel={self.model_parallel} does not divide the "
                      f"{len(devices)} devices: choose a divisor of {len(devices)}")
    shape = (len(devices) // self.model_parallel, self.model_parallel)
    axis_types = (AxisType.Auto,) * 2
    num_slices = len({getattr(d, "slice_index", 0) for d in devices})
    if num_slices == 1:
      self.mesh = jax.make_mesh(shape, (DATA_AXIS, MODEL_AXIS), axis_types=axis_types, devices=devices)
    else:
      # Multislice: `model` stays inside a slice (ICI); only `data` crosses slices (DCN).
      if shape[0] % num_slices:
        raise UserError(f"{shape[0]} data-parallel replicas do not split over {num_slices} slices: "
                        f"choose model_parallel so that {num_slices} divides devices / model_parallel")
      grid = mesh_utils.create_hybrid_device_mesh((shape[0] // num_slices, shape[1]), (num_slices, 1),
                                                  devices)
      self.mesh = jax.sharding.Mesh(grid, (DATA_AXIS, MODEL_AXIS), axis_types=axis_types)
    self.logical_axis_rules = tuple(tuple(r) for r in self.logical_axis_rules)

  @property
  def data_parallel(self) -> int:
    return self.mesh.shape[DATA_AXIS]

  @contextlib.contextmanager
  def context(self):
    """The scope every traced model call runs in: mesh plus logical rules."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.logical_axis_rules):
      yield

  def logical_to_sharding(self, logical_specs: Any) -> Any:
    """Tree of logical PartitionSpecs → tree of NamedShardings on this mesh.

    Raises:
      UserError naming the first logical axis that has no rule.
    """
    known = {name for name, _ in self.logical_axis_rules}
    for spec in jax.tree.leaves(logical_specs, is_leaf=lambda x: isinstance(x, P)):
      for entry in spec if isinstance(spec, P) else ():
        for name in entry if isinstance(entry, tuple) else (entry,):
          if isinstance(name, str) and name not in known:
            raise UserError(f"logical axis {name!r} has no partitioning rule: add ({name!r}, "
                            "mesh axis or None) to partitioning.Partitioner.logical_axis_rules")
    return nn.logical_to_mesh_sharding(logical_specs, self.mesh, self.logical_axis_rules)

  def batch_sharding(self, ndim: int) -> NamedSharding:
    """Leading axis over `data`, the rest replicated."""
    return NamedSharding(self.mesh, P(DATA_AXIS, *([None] * (ndim - 1))))

  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def host_shard(self) -> tuple[int, int]:
    """(index, count) of the input shard this host reads."""
    return jax.process_index(), jax.process_count()

  def check_batch_size(self, global_batch_size: int) -> None:
    if global_batch_size % self.data_parallel:
      raise UserError(f"batch size {global_batch_size} is not divisible by the {self.data_parallel} "
                      f"data-parallel replicas: pick a multiple of {self.data_parallel}")

  def make_global_batch(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This host's rows → global arrays sharded over `data` (multi-host safe)."""
    return {
        k: jax.make_array_from_process_local_data(self.batch_sharding(v.ndim), v)
        for k, v in host_batch.items()
    }

  def jit(self, fn: Callable, in_shardings, out_shardings, donate_argnums=()) -> Callable:
    """jax.jit with explicit shardings whose tracing sees the logical rules."""
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=donate_argnums)

    def call(*args):
      with self.context():
        return jitted(*args)

    call.lower = lambda *args: _lower_in(self, jitted, *args)
    return call


def _lower_in(partitioner: Partitioner, jitted, *args):
  with partitioner.context():
    return jitted.lower(*args)

