"""The process XLA:CPU runs best in: its flags, and glibc's malloc on huge pages.

Imports no jax, so it can run before JAX does. `gin_utils.run` (every binary, and the
benchmarks that run through it) calls `reexec_with_malloc_tunable` and `set_cpu_flags` first
thing, before JAX starts its backend (its first computation or device query reads XLA_FLAGS).
A flag or tunable the user already sets is left alone: the user's own setting wins.
"""
import os
import re
import sys

# XLA:CPU hands dots, elementwise fusions and reductions to YNNPACK by default. Its
# reductions ran one fusion of the small semantic stage's step, the gradient of the relative
# position bias all layers share (a sum over batch and layers of the [batch, heads, q, k]
# attention-logit gradients), in 1.2 s of a 6.3 s step. Dots only: step 6.0 -> 4.4 s, MFU
# 0.53 -> 0.72 (benchmarks/train_throughput.py --scale=small, back to back, load 3.8);
# decoding and the codec within noise.
CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",)

# glibc serves every allocation over 32 MB (XLA:CPU's large buffers: a training step's
# [batch, heads, q, k] attention logits are 74 MB at the small scale) with a fresh mmap and
# unmaps it when freed, so each step faults those pages in again, 4 KiB at a time, zeroed.
# With this tunable glibc asks for transparent huge pages (2 MiB) there, which Linux's
# default "madvise" mode grants only when asked: small-scale semantic step 4.33-4.66 ->
# 3.74-3.75 s, MFU 0.63-0.65 -> 0.71 of the same run's matmul peak (docs/design.md section 9).
MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"
# glibc reads its tunables once, at process start; 2.35 added this one.
_MIN_GLIBC = (2, 35)
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _option(flag: str) -> str:
  return flag.split("=", 1)[0]


def with_cpu_flags(xla_flags: str) -> str:
  """`xla_flags` plus each of CPU_FLAGS whose option it does not set already."""
  present = {_option(flag) for flag in xla_flags.split()}
  return " ".join(xla_flags.split() + [f for f in CPU_FLAGS if _option(f) not in present])


def set_cpu_flags(environ=os.environ) -> None:
  """Adds CPU_FLAGS to environ['XLA_FLAGS']; call before JAX initialises its backend."""
  environ["XLA_FLAGS"] = with_cpu_flags(environ.get("XLA_FLAGS", ""))


def with_malloc_tunable(tunables: str) -> str:
  """GLIBC_TUNABLES (colon-separated name=value) plus MALLOC_TUNABLE unless it names it."""
  present = {_option(t) for t in tunables.split(":") if t}
  if _option(MALLOC_TUNABLE) in present:
    return tunables
  return ":".join([t for t in tunables.split(":") if t] + [MALLOC_TUNABLE])


def malloc_tunable_pays(environ, glibc_version: str, thp_mode_text: str) -> bool:
  """Whether starting again with MALLOC_TUNABLE would change how this process allocates.

  glibc_version: os.confstr('CS_GNU_LIBC_VERSION'), e.g. 'glibc 2.36' ('' elsewhere);
  thp_mode_text: the kernel's transparent huge page modes with the current one in
  brackets, e.g. 'always [madvise] never'. Only in "madvise" mode does glibc's asking
  matter ("always" gives huge pages anyway, "never" never does).
  """
  version = re.fullmatch(r"glibc (\d+)\.(\d+)\b.*", glibc_version)
  if not version or tuple(map(int, version.groups())) < _MIN_GLIBC:
    return False
  if "[madvise]" not in thp_mode_text.split():
    return False
  tunables = environ.get("GLIBC_TUNABLES", "")
  return with_malloc_tunable(tunables) != tunables


def malloc_tunable_pays_here(environ=os.environ) -> bool:
  """`malloc_tunable_pays` with this machine's C library and transparent huge page mode."""
  try:
    glibc_version = os.confstr("CS_GNU_LIBC_VERSION")
    with open(_THP_MODE_FILE) as f:
      thp_mode_text = f.read()
  except (AttributeError, ValueError, OSError):  # not glibc, or no transparent huge pages
    return False
  return malloc_tunable_pays(environ, glibc_version, thp_mode_text)


def reexec_with_malloc_tunable() -> None:
  """Starts this program again (same pid, arguments and interpreter options) with
  MALLOC_TUNABLE in GLIBC_TUNABLES, when that pays (`malloc_tunable_pays_here`); else returns.

  The cost is the program's imports a second time (~5 s for musiclm-train here), once per
  process; `make demo` and `make test` export the tunable, so the binaries they start never
  pay it. GLIBC_TUNABLES=glibc.malloc.hugetlb=0 opts out. A program read from standard input or
  typed at the prompt cannot be started again, and is left as it is.
  """
  if sys.argv[0] not in ("", "-") and malloc_tunable_pays_here():
    tunables = with_malloc_tunable(os.environ.get("GLIBC_TUNABLES", ""))
    environ = dict(os.environ, GLIBC_TUNABLES=tunables)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
