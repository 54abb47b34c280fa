"""Training survives a corrupt checkpoint, a second trainer, a full disk; metrics stay one per step."""
import errno
import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from musiclm_jax import checkpoints
from musiclm_jax import dir_lock
from musiclm_jax import gin_utils
from musiclm_jax import metrics as metrics_lib
from musiclm_jax.errors import UserError
from test_binaries import _assert_one_line_error, _train as _train_binary
from test_trainer import _losses, _train


def _steps(model_dir) -> list[int]:
  return [r["step"] for r in metrics_lib.read_jsonl(f"{model_dir}/metrics.jsonl")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """Losses of an uninterrupted 12-step run."""
  model_dir = tmp_path_factory.mktemp("straight")
  _train(model_dir, 12)
  return _losses(model_dir)


def _truncate_arrays(step_dir):
  for path in glob.glob(f"{step_dir}/state/**/d/*", recursive=True):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def _empty_data_metadata(step_dir):
  open(f"{step_dir}/data/metadata", "w").close()


def _remove_state(step_dir):
  shutil.rmtree(f"{step_dir}/state")


# (corruption, whether the params export reads is broken)
@pytest.mark.parametrize("corrupt, breaks_state", [(_truncate_arrays, True),
                                                   (_empty_data_metadata, False),
                                                   (_remove_state, True)])
def test_a_corrupt_latest_checkpoint_resumes_from_the_step_before(tmp_path, straight, corrupt,
                                                                  breaks_state, caplog):
  run = tmp_path / "run"
  _train(run, 8)  # checkpoints at 4 and 8
  corrupt(run / "checkpoints" / "8")

  with caplog.at_level(logging.WARNING):
    export = checkpoints.export_checkpoint(model_dir=str(run), output_dir=str(tmp_path / "export"))
  assert os.path.isdir(export)
  assert breaks_state == any("checkpoint step 8" in r.getMessage() and "trying the step before"
                             in r.getMessage() for r in caplog.records)
  assert os.path.isdir(run / "checkpoints" / "8")  # export only reads

  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert _train(run, 12)["step"] == 12
  notices = [r.getMessage() for r in caplog.records if "checkpoint step 8" in r.getMessage()]
  assert len(notices) == 1 and len(notices[0].splitlines()) == 1
  assert "moved it to" in notices[0]
  assert len(glob.glob(str(run / "checkpoints" / "8.corrupt-*"))) == 1  # kept aside, not deleted
  losses = _losses(run)
  np.testing.assert_allclose([losses[s] for s in range(5, 13)],
                             [straight[s] for s in range(5, 13)], rtol=1e-6)
  assert _steps(run) == list(range(1, 13))  # steps 5-8 of the first run are not repeated


def test_a_checkpoint_with_nan_is_not_restored(tmp_path, straight, caplog):
  run = tmp_path / "run"
  _train(run, 8)
  # Step 8's state with NaN params, saved as step 10: it restores without an error.
  manager = ocp.CheckpointManager(os.path.abspath(run / "checkpoints"),
                                  item_names=("state", "data", "meta"))
  saved = manager.restore(8, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
  state = saved["state"]
  state["params"]["embedding"] = np.full_like(state["params"]["embedding"], np.nan)
  manager.save(10, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(saved["data"]),
      meta=ocp.args.JsonSave(saved["meta"])), force=True)
  manager.wait_until_finished()
  manager.close()

  with caplog.at_level(logging.WARNING):
    _train(run, 12)
  assert any("checkpoint step 10 holds NaN or Inf" in r.getMessage() for r in caplog.records)
  np.testing.assert_allclose(_losses(run)[12], straight[12], rtol=1e-6)  # resumed from step 8


def test_resume_drops_metrics_past_the_restored_step(tmp_path):
  _train(tmp_path, 6, checkpoint_period=4, stop_at_step=5)  # checkpoints at 4 and 5
  shutil.rmtree(tmp_path / "checkpoints" / "5")  # as if killed before saving step 5
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "train/lo')  # and in the middle of a line
  _train(tmp_path, 6)
  assert _steps(tmp_path) == [1, 2, 3, 4, 5, 6]


@pytest.fixture
def other_trainer(tmp_path):
  """A live process on this host whose pid holds tmp_path's lock."""
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  with open(tmp_path / dir_lock.LOCK_FILE, "w") as f:
    json.dump({"host": socket.gethostname(), "pid": proc.pid}, f)
  yield proc
  proc.kill()
  proc.wait()


def test_a_second_trainer_is_refused_naming_the_first(tmp_path, other_trainer):
  holder = f"host {socket.gethostname()}, pid {other_trainer.pid}"
  with pytest.raises(UserError, match=f"in use by another trainer \\({holder}\\)"):
    _train(tmp_path, 4)
  assert not (tmp_path / "checkpoints").exists()
  _assert_one_line_error(_train_binary(tmp_path, "--gin.TRAIN_STEPS=4"), holder)
  assert json.loads((tmp_path / dir_lock.LOCK_FILE).read_text())["pid"] == other_trainer.pid


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path, other_trainer, caplog):
  other_trainer.kill()
  other_trainer.wait()
  with caplog.at_level(logging.WARNING):
    assert _train(tmp_path, 4)["step"] == 4
  assert any("taking over the stale lock" in r.getMessage() and str(other_trainer.pid) in r.getMessage()
             for r in caplog.records)
  assert not (tmp_path / dir_lock.LOCK_FILE).exists()  # released at the end


def test_a_full_disk_stops_training_resumably_and_binaries_say_it_in_one_line(
    tmp_path, monkeypatch, capsys):
  real_write = metrics_lib.MetricsWriter.write

  def write(self, step, scalars, prefix="train"):
    if step == 6:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.jsonl_path)
    real_write(self, step, scalars, prefix)

  monkeypatch.setattr(metrics_lib.MetricsWriter, "write", write)
  with pytest.raises(OSError):
    _train(tmp_path, 8)
  assert not (tmp_path / dir_lock.LOCK_FILE).exists()
  monkeypatch.setattr(metrics_lib.MetricsWriter, "write", real_write)
  assert _train(tmp_path, 8)["step"] == 8  # resumed from step 4
  assert _steps(tmp_path) == list(range(1, 9))

  def main(argv):
    del argv
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "metrics.jsonl"))

  monkeypatch.setattr(sys, "argv", ["musiclm-train"])
  with pytest.raises(SystemExit) as exit_info:
    gin_utils.run(main)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      f"error: cannot use {tmp_path / 'metrics.jsonl'} (No space left on device): free space or "
      "fix the path and its permissions, then run again\n")


def test_an_export_cut_short_by_a_full_disk_is_not_trusted_and_can_be_redone(tmp_path, monkeypatch):
  (tmp_path / "run.gin").write_text("# the run's config\n")
  params = {"w": np.ones(3, np.float32)}
  real_copy = shutil.copyfile  # what the path layer (epath) copies local files with

  def copy(source, target):
    with open(target, "w") as f:
      f.write("# the run")  # half of it, then the disk is full
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

  monkeypatch.setattr(shutil, "copyfile", copy)
  with pytest.raises(OSError):
    checkpoints.export_params(params, str(tmp_path / "export"), gin_config_path=str(tmp_path / "run.gin"))
  assert not (tmp_path / "export" / "config.gin").exists()
  with pytest.raises(UserError, match="run musiclm-export first"):
    checkpoints.load_exported_params(tmp_path / "export", params)
  monkeypatch.setattr(shutil, "copyfile", real_copy)
  checkpoints.export_params(params, str(tmp_path / "export"), gin_config_path=str(tmp_path / "run.gin"))
  assert (tmp_path / "export" / "config.gin").read_text() == "# the run's config\n"


def test_exporting_replicated_arrays_on_cpu_compiles_nothing_and_reloads_them(tmp_path):
  # orbax's default copies a replicated array out in one slice per replica (rows split
  # 8 ways here), a device program compiled per shape and replica: seconds per array.
  import jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel
  replicated = NamedSharding(jax.make_mesh((jax.device_count(),), ("data",)), PartitionSpec())
  params = {f"w{i}": jax.device_put(np.full((8 * (i + 1), 3), i, np.float32), replicated)
            for i in range(4)}
  compiles = []

  def count_compiles(event, seconds, **kwargs):
    del seconds, kwargs
    if "backend_compile" in event:
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(count_compiles)
  try:
    checkpoints.export_params(params, str(tmp_path / "export"))
  finally:
    jax.monitoring.unregister_event_duration_listener(count_compiles)
  assert jax.device_count() == 8 and not compiles, compiles
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          params)
  reloaded = checkpoints.load_exported_params(str(tmp_path / "export"), abstract)
  for name, value in params.items():
    np.testing.assert_array_equal(reloaded[name], value)
    assert reloaded[name].sharding == replicated
