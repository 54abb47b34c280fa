"""musiclm-infer end to end: a toy LM trained and exported in-process, sampled by the binary."""
import json
import os
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

from musiclm_jax import checkpoints
from musiclm_jax import gin_utils
from musiclm_jax import prompt_sampling
from musiclm_jax import partitioning
from musiclm_jax import trainer
from musiclm_jax.data import pipeline
from musiclm_jax.data import toy_tasks
from conftest import REPO_DIR, TESTS_DIR


def _run_infer(*args):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]))
  return subprocess.run([sys.executable, "-m", "musiclm_jax.infer", "--gin_file=runs/infer.gin",
                         *args], capture_output=True, text=True, env=env, timeout=300,
                        cwd=TESTS_DIR)


# The toy LM of experiments/toy_lm.gin, smaller, without includes (so gin never looks
# 'runs/...' up as a Python package, which a runs/ folder in the working directory breaks).
TOY_LM_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm

MODEL = @lm.DecoderOnlyLM()
lm.DecoderOnlyLM.transformer_config = @transformer.TransformerConfig()
transformer.TransformerConfig:
  vocab_size = %toy_tasks.TOY_VOCAB_SIZE
  d_model = 64
  num_layers = 2
  num_heads = 4
  d_ff = 128
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("toy_run"))
  gin_file = os.path.join(model_dir, "toy_lm.gin")
  with open(gin_file, "w") as f:
    f.write(TOY_LM_GIN.replace("%toy_tasks.TOY_VOCAB_SIZE", str(toy_tasks.TOY_VOCAB_SIZE)))
  gin.clear_config()
  gin_utils.parse_gin([gin_file], [])
  try:
    trainer.train(model=gin.query_parameter("%MODEL").scoped_configurable_fn(),
                  model_dir=model_dir, total_steps=4, checkpoint_period=4,
                  train_dataset_cfg=pipeline.DatasetConfig(toy_tasks.TOY_TASK_NAME, {"targets": 32}),
                  partitioner=partitioning.Partitioner(num_devices=1),
                  on_ready=lambda: gin_utils.write_config(model_dir))
  finally:
    gin.clear_config()
  out = str(tmp_path_factory.mktemp("toy_export"))
  checkpoints.export_checkpoint(model_dir=model_dir, output_dir=out)
  return out


def test_infer_samples_each_line_reports_bad_ones_and_is_reproducible(export_dir, tmp_path):
  prompts = [
      {"prefix": [5, 9, 12], "num_tokens": 6, "seed": 1},
      {"prefix": [5, 9, 12], "num_tokens": 6, "seed": 1},
      {"prefix": [5, 9, 12], "num_tokens": 6, "seed": 2, "top_k": 20, "temperature": 0.8},
      "not json {",
      {"prefix": [5, 500]},
      {"prefix": [5], "num_tokens": 5000},
      {"num_tokens": 3, "colour": "red"},
      {"num_tokens": 4},
  ]
  prompts_file = tmp_path / "prompts.jsonl"
  prompts_file.write_text("\n".join(p if isinstance(p, str) else json.dumps(p) for p in prompts))
  out = tmp_path / "out"
  result = _run_infer(f"--gin.EXPORT_DIR='{export_dir}'", f"--gin.PROMPTS_FILE='{prompts_file}'",
                      f"--gin.OUTPUT_DIR='{out}'")

  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert "sampled 4 prompt(s)" in result.stdout
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: 4 prompt(s) failed, first line 4: not valid JSON")
  records = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
  assert [r["line"] for r in records] == list(range(1, 9))
  errors = {r["line"]: r["error"] for r in records if "error" in r}
  assert sorted(errors) == [4, 5, 6, 7]
  assert "prompt id 500 at (0, 1) is not one of the ids in [0, 128)" in errors[5]
  assert "exceeds max_length 4096" in errors[6]
  assert "unknown field(s) ['colour']" in errors[7]

  first, same, other, empty = (records[i] for i in (0, 1, 2, 7))
  assert len(first["tokens"]) == 6 and len(empty["tokens"]) == 4 and empty["prefix"] == []
  assert first["tokens"] == same["tokens"] and first["tokens"] != other["tokens"]
  assert (other["top_k"], other["temperature"], other["top_p"]) == (20, 0.8, 1.0)
  assert (out / "config.gin").exists()

  # Everything needed to reproduce a line is in its record.
  gin.clear_config()
  gin_utils.parse_gin([os.path.join(export_dir, "config.gin")], [])
  try:
    model = gin.query_parameter("%MODEL").scoped_configurable_fn()
  finally:
    gin.clear_config()
  params = prompt_sampling.load_params(model, first["export_dir"])
  again = model.predict_batch(params, {"prompt_tokens": np.asarray([other["prefix"]])},
                              jax.random.PRNGKey(other["seed"]), num_steps=other["num_tokens"],
                              temperature=other["temperature"], top_k=other["top_k"],
                              top_p=other["top_p"], guidance_scale=other["guidance_scale"],
                              max_length=other["max_length"])
  assert np.asarray(again)[0].tolist() == other["tokens"]


def test_missing_macro_and_missing_export_are_one_line_errors(tmp_path):
  result = _run_infer(f"--gin.EXPORT_DIR='{tmp_path}'")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "PROMPTS_FILE" in result.stderr.strip().splitlines()[-1]
  result = _run_infer(f"--gin.EXPORT_DIR='{tmp_path}'", "--gin.PROMPTS_FILE='p.jsonl'",
                      f"--gin.OUTPUT_DIR='{tmp_path}/out'")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"error: no config.gin in EXPORT_DIR {tmp_path}")
