"""Paths on shared storage: plain paths behave as before, URLs stay whole, and a run whose
MODEL_DIR / EXPORT_DIR are `file://` URLs (standing in for gs://) trains, resumes, exports and loads."""
import logging
import os

import gin
import jax
import numpy as np
import optax
import pytest

from musiclm_jax import checkpoints
from musiclm_jax import dir_lock
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import inference
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import paths
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.errors import UserError
from musiclm_jax.layers import kmeans
from test_trainer import _batches, _losses, _train
from tiny_models import ContextMLPModel


def test_plain_paths_join_as_os_path_does_and_urls_stay_whole(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.join("run", "checkpoints") == os.path.abspath(os.path.join("run", "checkpoints"))
  assert paths.join("/a/b/", "c", "d") == "/a/b/c/d"
  assert paths.join(f"file://{tmp_path}/run", "config.gin") == f"{tmp_path}/run/config.gin"
  # os.path.abspath would make this '<cwd>/gs:/bucket/run/checkpoints'.
  assert paths.join("gs://bucket/run", "checkpoints") == "gs://bucket/run/checkpoints"
  assert [paths.is_local(p) for p in ("run", "/a", f"file://{tmp_path}", "gs://b/run")] == [
      True, True, True, False]


def test_files_written_through_a_file_url_are_the_plain_paths_files(tmp_path):
  codebook = kmeans.Codebook(centroids=np.arange(6, dtype=np.float32).reshape(3, 2),
                             feature_mean=np.zeros(2, np.float32),
                             feature_std=np.ones(2, np.float32), metadata={"layer": 7})
  codebook.save(f"file://{tmp_path}/kmeans.npz")
  with np.load(tmp_path / "kmeans.npz") as data:
    np.testing.assert_array_equal(data["centroids"], codebook.centroids)
  loaded = kmeans.Codebook.load(f"file://{tmp_path}/kmeans.npz")
  np.testing.assert_array_equal(loaded.centroids, codebook.centroids)
  assert loaded.metadata == {"layer": 7}

  (tmp_path / "extra.gin").write_text("LEARNING_RATE = 0.25\n")
  with gin_models.isolated_gin_config():
    gin_utils.parse_gin([f"file://{tmp_path}/extra.gin"], [])
    assert gin.query_parameter("%LEARNING_RATE") == 0.25


def test_a_run_on_a_file_url_trains_resumes_exports_and_loads(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a path taken for a relative one would land here
  straight = tmp_path / "straight"
  _train(straight, 8)
  url = f"file://{tmp_path}/shared/run"
  assert _train(url, 8, stop_at_step=4)["step"] == 4
  resumed = _train(url, 8)
  assert resumed["step"] == 8 and resumed["checkpoint_dir"] == f"{tmp_path}/shared/run/checkpoints"
  np.testing.assert_allclose([_losses(tmp_path / "shared/run")[s] for s in range(5, 9)],
                             [_losses(straight)[s] for s in range(5, 9)], rtol=1e-6)

  export = f"file://{tmp_path}/shared/export"
  checkpoints.export_checkpoint(model_dir=url, output_dir=export)
  model, partitioner = ContextMLPModel(), partitioning.Partitioner(num_devices=1)
  batch = _batches(1)[0]
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  tx = optimizers.make_optimizer(learning_rate=optax.constant_schedule(3e-3))
  trainer = trainer_lib.Trainer(model, partitioner, tx, spec)
  exported = checkpoints.load_exported_params(export, trainer.abstract_state.params)
  from_plain = checkpoints.load_exported_params(
      checkpoints.export_checkpoint(model_dir=str(straight), output_dir=str(tmp_path / "plain"))
      .rsplit("/", 1)[0], trainer.abstract_state.params)
  tokens = batch["decoder_input_tokens"]
  np.testing.assert_allclose(model.logits(exported, tokens), model.logits(from_plain, tokens),
                             rtol=1e-5, atol=1e-6)
  assert sorted(os.listdir(tmp_path)) == ["plain", "shared", "straight"]  # no 'file:' folder


def test_object_storage_gets_no_lock_and_says_so(caplog):
  lock = dir_lock.DirLock("gs://bucket/run")
  with caplog.at_level(logging.WARNING):
    with lock:  # touches no storage: a gs:// write here would need credentials and a network
      pass
  assert "no lock on gs://bucket/run: object storage cannot hold one" in caplog.text


def test_infer_asks_for_a_mounted_folder_instead_of_a_bucket():
  with pytest.raises(UserError, match="OUTPUT_DIR gs://bucket/out is not a local folder: .*gcsfuse"):
    inference.infer(load_cascade=None, prompts_file="prompts.txt", output_dir="gs://bucket/out")
