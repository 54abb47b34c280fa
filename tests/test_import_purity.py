"""models/ and layers/ are plain Flax: importing them brings no gin, absl flags, SeqIO or TensorFlow,
nor the audio file readers (librosa, soundfile) that only the data side needs. The window plan,
and the paper's facts and token layouts it reads, bring not even JAX: the window-join measure
(eval/joins.py) reads the cascade's windows without loading the models.

The imports run in a fresh interpreter (this test process has long imported
everything), one module after another; after each, the flags are compared with
what absl itself defines (absl.logging's included), so a failure names the first module that broke the rule.
"""
import json
import os
import pkgutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE_PACKAGES = ("musiclm_jax.layers", "musiclm_jax.models")
FORBIDDEN_MODULES = ("tensorflow", "gin", "seqio", "librosa", "soundfile")
JAX_FREE_MODULES = ("musiclm_jax.data.token_layout", "musiclm_jax.musiclm_spec",
                    "musiclm_jax.window_plan", "musiclm_jax.eval.joins",
                    "musiclm_jax.results_file", "musiclm_jax.xla_flags",
                    "musiclm_jax.simulated_devices")

_PROBE = """
import importlib, json, sys
from absl import flags
from absl import logging  # absl's own flags (--verbosity, ...), which JAX's imports bring too
baseline = set(flags.FLAGS)
report = {}
forbidden = json.loads(sys.argv[1])
for name in sys.argv[2:]:
  importlib.import_module(name)
  gin = sys.modules.get("gin")
  report[name] = {
      "new_flags": sorted(set(flags.FLAGS) - baseline),
      "forbidden": [m for m in forbidden if m in sys.modules],
      "gin_registered": len(gin.config._REGISTRY) if gin else 0,
  }
print(json.dumps(report))
"""


def _modules(package: str) -> list[str]:
  folder = os.path.join(ROOT, *package.split("."))
  return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules([folder])]


def _first_impure(modules, forbidden):
  """The first of `modules` (imported in order, in a fresh interpreter) that brings absl flags,
  gin registrations or one of `forbidden`, with what it brought; None if all are clean."""
  result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(forbidden), *modules], cwd=ROOT,
                          capture_output=True, text=True, check=True)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  clean = {"new_flags": [], "forbidden": [], "gin_registered": 0}
  return next(((name, found) for name, found in report.items() if found != clean), None)


def test_models_and_layers_import_no_gin_flags_or_tensorflow():
  modules = [m for p in PURE_PACKAGES for m in _modules(p)]
  assert "musiclm_jax.models.soundstream" in modules  # the listing found the files
  impure = _first_impure(modules, FORBIDDEN_MODULES)
  assert impure is None, f"first impure import: {impure}"


def test_window_plan_imports_no_jax():
  impure = _first_impure(JAX_FREE_MODULES, ("jax", "flax") + FORBIDDEN_MODULES)
  assert impure is None, f"first import that loads JAX or worse: {impure}"
  # The probe can fail: the cascade, which samples with JAX, is caught.
  assert _first_impure(["musiclm_jax.cascade"], ("jax",))[1]["forbidden"] == ["jax"]
