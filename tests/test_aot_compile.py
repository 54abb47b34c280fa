"""The AOT compile tool lowers and compiles a sharded train step on simulated devices."""
import json
import os
import subprocess
import sys

from conftest import REPO_DIR, TESTS_DIR


def test_tiny_semantic_step_compiles_on_a_simulated_mesh_and_reports_memory():
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]),
             XLA_FLAGS="--xla_force_host_platform_device_count=2")  # the tool must override it
  result = subprocess.run(
      [sys.executable, "-m", "musiclm_jax.tools.aot_compile", "--stage=semantic", "--scale=tiny",
       "--batch_size=8", "--length=64", "--model_parallel=2"],
      capture_output=True, text=True, env=env, timeout=300, cwd=TESTS_DIR)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["devices"] == 8 and report["mesh"] == {"data": 4, "model": 2}
  assert (report["batch_size"], report["length"]) == (8, 64)
  sizes = report["per_device_bytes"]
  # Params + two Adam moments in float32, vocab/mlp/heads split in two, plus the batch.
  state_bytes = 3 * 4 * report["params"]
  assert state_bytes / 2 <= sizes["argument"] <= state_bytes
  assert sizes["output"] >= sizes["argument"] * 0.9 and sizes["temp"] > 0
