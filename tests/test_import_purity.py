"""models/ and layers/ are plain Flax: importing them brings no gin, absl flags, SeqIO or TensorFlow,
nor the audio file readers (librosa, soundfile) that only the data side needs.

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

_PROBE = """
import importlib, json, sys
from absl import flags
from absl import logging  # absl's own flags (--verbosity, ...), which JAX's imports bring too
baseline = set(flags.FLAGS)
report = {}
for name in sys.argv[1:]:
  importlib.import_module(name)
  gin = sys.modules.get("gin")
  report[name] = {
      "new_flags": sorted(set(flags.FLAGS) - baseline),
      "forbidden": [m for m in %r if m in sys.modules],
      "gin_registered": len(gin.config._REGISTRY) if gin else 0,
  }
print(json.dumps(report))
""" % (FORBIDDEN_MODULES,)


def _modules(package: str) -> list[str]:
  folder = os.path.join(ROOT, *package.split("."))
  return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules([folder])]


def test_models_and_layers_import_no_gin_flags_or_tensorflow():
  modules = [m for p in PURE_PACKAGES for m in _modules(p)]
  assert "musiclm_jax.models.soundstream" in modules  # the listing found the files
  result = subprocess.run([sys.executable, "-c", _PROBE, *modules], cwd=ROOT, capture_output=True,
                          text=True, check=True)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  clean = {"new_flags": [], "forbidden": [], "gin_registered": 0}
  dirty = [(name, found) for name, found in report.items() if found != clean]
  assert not dirty, f"first impure import: {dirty[0]}"
