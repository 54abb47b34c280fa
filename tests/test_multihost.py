"""Two processes × four CPU devices train like one process on the same global batches."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np


from musiclm_jax import metrics as metrics_lib
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from conftest import REPO_DIR, TESTS_DIR
from test_trainer import TRAIN
from tiny_models import ContextMLPModel


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_hosts_read_their_shards_and_match_one_host(tmp_path):
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]))
  workers = [subprocess.Popen([sys.executable, os.path.join(TESTS_DIR, "multihost_worker.py"),
                               str(i), "2", str(port), str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  for w in workers:
    _, err = w.communicate(timeout=300)
    assert w.returncode == 0, err[-3000:]
  multi = [r["train/loss"] for r in metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")]

  # One process, the same global batches: host 0's rows then host 1's rows.
  shards = [pipeline.get_batches(TRAIN, i, 2) for i in range(2)]
  partitioner = partitioning.Partitioner(model_parallel=2)
  first = [next(s) for s in shards]
  batches = [{k: np.concatenate([b[k] for b in first]) for k in first[0]}]
  for _ in range(3):
    parts = [next(s) for s in shards]
    batches.append({k: np.concatenate([b[k] for b in parts]) for k in parts[0]})
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  trainer = trainer_lib.Trainer(ContextMLPModel(dropout_rate=0.0), partitioner,
                                optimizers.make_optimizer(learning_rate=3e-3), spec)
  state = trainer.init_state()
  single = []
  for batch in batches:
    state, m = trainer.train_step(state, partitioner.make_global_batch(batch))
    single.append(float(m["loss"]))
  assert len(multi) == 4
  np.testing.assert_allclose(multi, single, rtol=2e-5)
  assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "4"
