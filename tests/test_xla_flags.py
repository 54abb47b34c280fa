"""The process XLA:CPU runs in: its flags and glibc's malloc tunable, added before JAX starts,
never over a user's own setting."""
import os
import subprocess
import sys

import conftest
import jax
import jax.numpy as jnp
import pytest

from musiclm_jax import xla_flags


def test_flags_are_appended_and_a_users_own_setting_wins():
  (flag,) = xla_flags.CPU_FLAGS
  option = flag.split("=")[0]
  env = {}
  xla_flags.set_cpu_flags(env)
  assert env["XLA_FLAGS"] == flag
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  xla_flags.set_cpu_flags(env)
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {flag}"
  xla_flags.set_cpu_flags(env)  # twice changes nothing
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {flag}"
  own = f"{option}=LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
  assert xla_flags.with_cpu_flags(own) == own


def test_reductions_are_not_handed_to_ynnpack():
  # conftest sets the flags as the binaries do; by default XLA:CPU compiles this sum over
  # the batch axis (the shape of the shared position bias's gradient) as a YNNPACK fusion.
  summed = jax.jit(lambda x: jnp.sum(x * x, axis=0))
  compiled = summed.lower(jnp.ones((4, 8, 64, 64))).compile().as_text()
  assert "ynn_fusion" not in compiled


def test_the_malloc_tunable_joins_a_users_tunables_and_never_overrides_theirs():
  assert xla_flags.with_malloc_tunable("") == xla_flags.MALLOC_TUNABLE
  assert (xla_flags.with_malloc_tunable("glibc.malloc.arena_max=2")
          == f"glibc.malloc.arena_max=2:{xla_flags.MALLOC_TUNABLE}")
  assert xla_flags.with_malloc_tunable("glibc.malloc.hugetlb=0") == "glibc.malloc.hugetlb=0"


@pytest.mark.parametrize("environ, glibc, thp, pays", [
    ({}, "glibc 2.36", "always [madvise] never", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc 2.36", "always [madvise] never", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "glibc 2.36", "always [madvise] never", False),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "glibc 2.36", "always [madvise] never", False),
    ({}, "glibc 2.34", "always [madvise] never", False),  # no such tunable yet
    ({}, "glibc 2.36", "[always] madvise never", False),  # huge pages without asking
    ({}, "glibc 2.36", "always madvise [never]", False),
    ({}, "", "always [madvise] never", False),  # another C library
    ({}, "glibc 2.41.9000", "always [madvise] never", True),  # a development snapshot
    ({}, "glibc unknown", "always [madvise] never", False),
])
def test_the_program_starts_again_only_where_the_tunable_changes_something(environ, glibc, thp,
                                                                          pays):
  assert xla_flags.malloc_tunable_pays(environ, glibc, thp) == pays


def test_the_makefile_exports_the_same_tunable():
  with open(os.path.join(conftest.REPO_DIR, "Makefile")) as f:
    assert f"export GLIBC_TUNABLES ?= {xla_flags.MALLOC_TUNABLE}\n" in f.read()


_HUGE_PAGE_PROBE = """
import ctypes, os
from musiclm_jax import gin_utils
def huge_kb():
  with open("/proc/self/smaps_rollup") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))
def main(argv):
  # Plain malloc, as XLA:CPU allocates (numpy asks for huge pages itself), over glibc's mmap
  # threshold like XLA's large buffers, every page touched.
  libc, size = ctypes.CDLL(None), 64 << 20
  libc.malloc.restype = ctypes.c_void_p
  before = huge_kb()
  ctypes.memset(libc.malloc(size), 1, size)
  print(os.environ.get("GLIBC_TUNABLES", ""), huge_kb() - before >= (size >> 10) // 2)
gin_utils.run(main)
"""


@pytest.mark.skipif(not xla_flags.malloc_tunable_pays_here({}),
                    reason="needs glibc >= 2.35 and transparent huge pages in madvise mode")
def test_a_binary_starts_again_with_its_large_buffers_on_huge_pages():
  def run(environ):
    return subprocess.run([sys.executable, "-c", _HUGE_PAGE_PROBE], env=environ,
                          capture_output=True, text=True, check=True, timeout=300).stdout.split()

  environ = conftest.binary_env()
  del environ["GLIBC_TUNABLES"]
  assert run(environ) == [xla_flags.MALLOC_TUNABLE, "True"]
  # The opt-out: a user's own setting, kept as it is, and 4 KiB pages.
  opted_out = "glibc.malloc.hugetlb=0"
  assert run(dict(environ, GLIBC_TUNABLES=opted_out)) == [opted_out, "False"]
