"""Suite-wide setup (simulated devices, quiet TF, repo paths) and shared fixtures."""
import os
import shutil
import subprocess
import sys
import tempfile

from musiclm_jax import simulated_devices  # imports no jax
from musiclm_jax import xla_flags  # imports no jax

# Must happen before JAX initialises its backend: sharding tests need a mesh, and
# simulated_devices says why its scheduler flag keeps their collectives from deadlocking.
# XLA:CPU aborts the process when a device's thread reaches a collective too late after the
# others (its terminate timeout); on 2 cores shared with the other worker's binaries,
# 8 device threads can be starved that long: one xdist worker died "Aborted" in a
# sharded test that passes alone.
# Tests compile many tiny programs and run each a few steps, so XLA's backend optimisation
# is a large share of their CPU time: level 0 ran test_lm + test_cascade in 55.8 s instead
# of 88.5 s, and `make test` in 827-946 s instead of 1028 s (one idle machine; the binaries'
# runs, the quick demo's most of all, gain little). Skipping LLVM's expensive passes cut
# another 5-6% (test_cascade + test_decoding 56.1 -> 52.8 s, test_infer + test_stage_training
# 138 -> 129 s; means of two alternating runs each, one machine). XLA:CPU's older fusion
# emitters (LLVM IR written directly) compile faster than its MLIR ones, the default:
# test_stage_training + test_decoding + test_lm + test_trainer in one process took 114 and
# 111 s with them, 199 and 178 s without; the quick demo alone 211 and 209 s, 236 and 235 s
# without (alternating, idle, one machine, 2026-12-07); `make test` on a clean clone 621, 753
# and 622 s of pytest, 842 s without (the same day; runs of one commit varied by 20% there).
# Their code may run slower: the training-bound test_toy_experiment took 27-41 s in the suite
# with them, 32-36 s without.
# Programs a user runs keep the defaults.
# The project's XLA:CPU flags (`xla_flags`) are on, as in every binary.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                      "--xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("XLA_FLAGS", xla_flags.with_cpu_flags(
    simulated_devices.xla_flags(8) + " " + FAST_COMPILE_FLAGS +
    " --xla_cpu_collective_call_terminate_timeout_seconds=1800"))
# As `make test` exports it: binaries the tests start (and gin_utils.run called in-process)
# then never start themselves again for it.
os.environ["GLIBC_TUNABLES"] = xla_flags.with_malloc_tunable(os.environ.get("GLIBC_TUNABLES", ""))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# numba's on-disk cache (librosa's pitch and CQT functions) is not safe for two processes
# compiling one function at once: in a fresh venv, the quick demo's musiclm-eval and the other
# worker's music-stats tests once wrote one overload's code under both of its cache entries,
# and every later call segfaulted. Each xdist worker, with the processes it starts, has its
# own cache in the run's folder (`pytest_configure`); numba reads this at its import.
_NUMBA_CACHES = "MUSICLM_JAX_TESTS_NUMBA_CACHES"  # the run's folder of per-worker numba caches
if "PYTEST_XDIST_WORKER" in os.environ and _NUMBA_CACHES in os.environ:
  os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.environ[_NUMBA_CACHES],
                                                        os.environ["PYTEST_XDIST_WORKER"]))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
sys.path.insert(0, TESTS_DIR)

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from musiclm_jax.binary_runner import BinaryRunner
from musiclm_jax.data.synth_music import builder
from musiclm_jax.data.synth_music import corpus

REPO_ROOT = REPO_DIR

# Test files that take minutes, longest first. `make test` hands whole files to its
# two workers in collection order (--dist loadfile --no-loadscope-reorder), so these
# start at once; xdist's own order (most tests first) left the one-test quick demo
# to the end of the run, on one worker, while the other idled.
LONGEST_FIRST = ("test_demo.py", "test_multihost.py", "test_codec_training.py", "test_w2v_bert.py",
                 "test_launch.py", "test_infer.py", "test_evaluate.py", "test_binaries.py",
                 "test_stage_training.py", "test_toy_experiment.py")

# The smallest corpus that still has every split, scores, and melody pairs:
# 8 pieces x one 2 s clip; seed 0 draws a chorale and a folk tune, both paired.
SYNTH_MICRO_SPEC = corpus.CorpusSpec(
    num_clips=8, clip_seconds=2.0, clips_per_piece=1, score_fraction=0.25,
    melody_pair_fraction=0.5, seed=0)


def binary_env(**overrides: str) -> dict[str, str]:
  """The environment for running a binary in a subprocess, as a user runs it on a CPU: one
  device (the 8 simulated devices are for in-process sharding tests; on 8 devices each binary
  compiles 8-way programs and runs them on 2 cores), compiled as fast as the in-process tests,
  the repo and tests importable."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]),
             XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {FAST_COMPILE_FLAGS}")
  env.update(overrides)
  return env


_binary_runner = None  # this worker's, started at its first run_binary


def run_binary(module: str, *args: str, cwd: str | None = None,
               timeout_seconds: float = 600) -> subprocess.CompletedProcess:
  """`python -m module *args` in `binary_env`, its output captured, as subprocess.run with
  capture_output=True and text=True returns it; run in a child of a fork server that imported
  TF, seqio, JAX and Flax once (`binary_runner`: the same process otherwise, its equivalence
  tested in test_binary_runner.py), so a binary that fails at once costs ~0.1 s (test_binaries'
  one-line-error tests), not ~5 s."""
  global _binary_runner
  if _binary_runner is None:
    _binary_runner = BinaryRunner()
  with tempfile.TemporaryDirectory() as folder:
    stdout_path, stderr_path = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
    for path in (stdout_path, stderr_path):
      open(path, "w").close()
    status = _binary_runner.run(module, args, stdout_path, stderr_path=stderr_path, cwd=cwd,
                                environ=binary_env(), timeout_seconds=timeout_seconds)
    with open(stdout_path) as stdout, open(stderr_path) as stderr:
      return subprocess.CompletedProcess([module, *args], status, stdout.read(), stderr.read())


def load_data_builder_class(name: str) -> type[tfds.core.DatasetBuilder]:
  """The Builder of data/<name>/, loaded the way `tfds build data/<name>` loads it."""
  with tfds.core.utils.add_sys_path(os.path.join(REPO_ROOT, "data")):
    return tfds.core.community.builder_cls_from_module(f"{name}.{name}_dataset_builder")


def sine(frequency_hz: float, seconds: float, sample_rate_hz: int,
         amplitude: float = 0.5) -> np.ndarray:
  """[time] float32 sine wave."""
  t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
  return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


# One persistent XLA compilation cache per run, made by the process that starts
# pytest: its xdist workers and every process the tests start (the binaries, the
# quick demo) inherit it, so a program compiled once (a resumed run's train step,
# a test's second Trainer of one model) is loaded, not compiled again. It goes
# with the run; a cache the environment names is used and kept.
_xla_cache_dir = None
_numba_caches_dir = None


def pytest_configure(config: pytest.Config) -> None:
  del config
  global _xla_cache_dir, _numba_caches_dir
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # else an xdist worker, or the user's own
    _xla_cache_dir = tempfile.mkdtemp(prefix="musiclm_jax_tests_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache_dir
    jax.config.update("jax_compilation_cache_dir", _xla_cache_dir)  # JAX read the env at import
  if "PYTEST_XDIST_WORKER" not in os.environ and _NUMBA_CACHES not in os.environ:
    _numba_caches_dir = tempfile.mkdtemp(prefix="musiclm_jax_tests_numba_caches_")
    os.environ[_NUMBA_CACHES] = _numba_caches_dir  # for the workers, started after this


def pytest_unconfigure(config: pytest.Config) -> None:
  del config
  for folder in (_xla_cache_dir, _numba_caches_dir):
    if folder:
      shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  """Puts the files of LONGEST_FIRST first, in that order; the rest keep theirs."""
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def synth_music_micro(tmp_path_factory) -> tfds.core.DatasetBuilder:
  """A built synth_music corpus of 8 x 2 s clips (about 10 s to build)."""
  config = builder.SynthMusicConfig(name="micro", spec=SYNTH_MICRO_SPEC)
  return builder.build_synth_music(tmp_path_factory.mktemp("tfds"), config)
