"""The binaries as a user runs them: one-line errors, SIGTERM, export."""
import os
import signal
import subprocess
import sys
import time

import pytest

from musiclm_jax import checkpoints
from musiclm_jax import metrics as metrics_lib
from conftest import TESTS_DIR, binary_env, run_binary

TEST_GIN = os.path.join(TESTS_DIR, "gin", "context_mlp.gin")


def _command(binary, *args):
  return [sys.executable, "-m", f"musiclm_jax.{binary}", *args]


def _run(binary, *args):
  return run_binary(f"musiclm_jax.{binary}", *args, timeout_seconds=300)


def _train(model_dir, *extra):
  return _run("train", f"--gin_file={TEST_GIN}", f"--gin.MODEL_DIR='{model_dir}'", *extra)


def _assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ")
  for fragment in fragments:
    assert fragment in last


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("run")
  result = _train(model_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "trained to step 8" in result.stdout
  return model_dir


def test_bad_gin_file_is_one_line(tmp_path):
  bad = tmp_path / "bad.gin"
  bad.write_text("trainer.train.total_steps = (1\n")
  _assert_one_line_error(_run("train", f"--gin_file={bad}"), "bad gin config")


def test_missing_required_macro_names_it():
  _assert_one_line_error(_run("train", f"--gin_file={TEST_GIN}"), "MODEL_DIR", "--gin.MODEL_DIR")


@pytest.mark.parametrize("binary, usage", [("export", "--gin_file"),
                                            ("tools.param_count", "--scale and --stage")])
def test_positional_argument_is_one_line(binary, usage):
  _assert_one_line_error(_run(binary, "stray"), "unexpected arguments ['stray']", usage)


def test_required_macro_no_gin_file_declares_is_one_line(tmp_path):
  # A config that leaves out runs/train.gin, so nothing declares MODEL_DIR.
  partial = tmp_path / "partial.gin"
  partial.write_text("MODEL = 1\n")
  _assert_one_line_error(_run("train", f"--gin_file={partial}"), "MODEL_DIR", "--gin.MODEL_DIR")


def test_unwritable_model_dir_is_one_line():
  _assert_one_line_error(_train("/proc/no_such_dir/run"), "not writable")


def test_incompatible_checkpoint_is_refused_and_nothing_overwritten(trained_dir):
  config = (trained_dir / "config.gin").read_text()
  steps = sorted(os.listdir(trained_dir / "checkpoints"))
  result = _train(trained_dir, "--gin.tiny_models.ContextMLPModel.embed_dim=16",
                  "--gin.TRAIN_STEPS=12")
  _assert_one_line_error(result, "different model", "Dense_0/kernel")
  assert (trained_dir / "config.gin").read_text() == config
  assert sorted(os.listdir(trained_dir / "checkpoints")) == steps


def test_export_binary_writes_params_and_config(trained_dir, tmp_path):
  out = tmp_path / "export"
  result = _run("export", "--gin_file=runs/export.gin", f"--gin.MODEL_DIR='{trained_dir}'",
                f"--gin.EXPORT_DIR='{out}'", "--gin.EXPORT_DTYPE='bfloat16'")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (out / "params").is_dir()
  assert "ContextMLPModel" in (out / "config.gin").read_text()


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
  proc = subprocess.Popen(
      _command("train", f"--gin_file={TEST_GIN}", f"--gin.MODEL_DIR='{tmp_path}'",
               "--gin.TRAIN_STEPS=100000", "--gin.trainer.train.checkpoint_period=100000"),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=binary_env())
  metrics_path = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and not (metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= 3):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]

  saved = checkpoints.Checkpointer(tmp_path / "checkpoints").latest_step()
  assert saved is not None and saved >= 3
  result = _train(tmp_path, f"--gin.TRAIN_STEPS={saved + 2}")
  assert result.returncode == 0, result.stderr[-3000:]
  steps = [r["step"] for r in metrics_lib.read_jsonl(metrics_path)]
  assert steps[-2:] == [saved + 1, saved + 2]
