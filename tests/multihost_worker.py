"""One process of a two-process CPU training run (used by test_multihost.py).

argv: process_id num_processes coordinator_port model_dir
"""
import os
import sys

from musiclm_jax import simulated_devices  # imports no jax

os.environ["XLA_FLAGS"] = (simulated_devices.xla_flags(4) +
                           " --xla_cpu_collective_call_terminate_timeout_seconds=1800")  # conftest says why
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from musiclm_jax import partitioning  # pylint: disable=g-import-not-at-top
from musiclm_jax import trainer
from test_trainer import TRAIN
from tiny_models import ContextMLPModel


def main():
  process_id, num_processes, port, model_dir = sys.argv[1:]
  partitioning.maybe_initialize_distributed(f"localhost:{port}", int(num_processes), int(process_id))
  trainer.train(model=ContextMLPModel(dropout_rate=0.0), model_dir=model_dir, total_steps=4,
                train_dataset_cfg=TRAIN, learning_rate=3e-3, log_period=1, checkpoint_period=2,
                partitioner=partitioning.Partitioner(model_parallel=2))


if __name__ == "__main__":
  main()
