"""Gin plumbing for the binaries, in the style of T5X's gin_utils.

Command lines take `--gin_file=PATH` (repeatable; relative paths are also
searched in the repo's gin/ folder), `--gin_bindings='KEY = VALUE'`
(repeatable) and the shorthand `--gin.KEY=VALUE`. Gin files use
`from __gin__ import dynamic_registration`, so model code never imports gin.
"""
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from musiclm_jax import partitioning
from musiclm_jax import paths
from musiclm_jax import xla_flags
from musiclm_jax.errors import UserError

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")
_REQUIRED_REPR = "%gin.REQUIRED"


def _open_url(path: str):
  return paths.resolve(path).open()


def _is_readable_url(path: str) -> bool:
  return paths.is_url(path) and paths.resolve(path).is_file()


# Gin reads local files only; an export's config.gin may be on gs:// or a file:// URL.
gin.config.register_file_reader(_open_url, _is_readable_url)

_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [], "Gin config files, applied in order; relative paths are also looked up in gin/.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Extra gin bindings ('KEY = VALUE'), applied after the files.")
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths", [GIN_DIR], "Folders searched for relative --gin_file paths and includes.")
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
_AUTO_DISTRIBUTED = flags.DEFINE_bool(
    "auto_distributed", False, "Join the multi-process run JAX detects (TPU pod, SLURM, Open MPI, "
    "Kubernetes); the flags above override what it detects.")
_INITIALIZATION_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout_seconds", 300, "How long processes wait for each other to join.")


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """Turns `--gin.KEY=VALUE` into `--gin_bindings=KEY = VALUE` for absl."""
  out = []
  for arg in argv:
    if arg.startswith("--gin."):
      key, sep, value = arg[len("--gin."):].partition("=")
      if not sep:
        raise UserError(f"gin flag {arg!r} has no value: write --gin.{key}=VALUE")
      out.append(f"--gin_bindings={key} = {value}")
    else:
      out.append(arg)
  return out


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str],
              search_paths: Sequence[str] = (GIN_DIR,)) -> None:
  """Parses files then bindings; raises UserError with one line on any mistake."""
  # Our folders go before gin's default '' prefix: for a relative include such
  # as 'runs/train.gin', the '' prefix reaches gin's Python-package reader,
  # which crashes when the working directory holds a folder named 'runs'.
  prefixes = gin.config._LOCATION_PREFIXES  # pylint: disable=protected-access
  for path in reversed(search_paths):
    if path not in prefixes:
      prefixes.insert(0, path)
  resolved = []
  for path in gin_files:
    # A URL (gs://, file://) is looked up as given, never under a search path.
    candidates = [path] if paths.is_url(path) else [os.path.join(p, path) for p in ("", *search_paths)]
    found = [c for c in candidates if paths.resolve(c).exists()]
    if not found:
      raise UserError(f"gin file {path!r} not found here or in {', '.join(search_paths)}")
    resolved.append(found[0])
  verbosity = logging.get_verbosity()
  # Gin logs an ERROR for every search path an include is not in before it finds it.
  logging.set_verbosity(logging.FATAL)
  try:
    gin.parse_config_files_and_bindings(resolved, gin_bindings, finalize_config=False)
  except (ValueError, SyntaxError, ImportError, AttributeError, TypeError, KeyError) as e:
    raise UserError(f"bad gin config: {_first_line(e)}") from None
  except Exception as e:  # gin re-raises tokenizer/parser errors under varied types.
    raise UserError(f"bad gin config: {type(e).__name__}: {_first_line(e)}") from None
  finally:
    logging.set_verbosity(verbosity)


def check_required_macros(names: Sequence[str]) -> None:
  """Fails with the macro's name if a required macro is undeclared, unset or still REQUIRED."""
  for name in names:
    try:
      value = gin.query_parameter(f"%{name}")
    except ValueError:
      # The binary reads it, so a config that never declares it cannot run.
      raise UserError(f"gin macro {name} is required but no gin file declares it: include the "
                      f"binary's runs/*.gin in your config or pass --gin.{name}=VALUE") from None
    if repr(value) == _REQUIRED_REPR:
      raise UserError(f"gin macro {name} is required: pass --gin.{name}=VALUE or set it in a gin file")


def write_config(model_dir: str) -> str:
  """Writes the resolved config (all bindings in effect) to MODEL_DIR/config.gin."""
  path = paths.resolve(model_dir) / "config.gin"
  draft = path.with_name("config.gin.tmp")  # renamed when whole: a full disk leaves no half config
  draft.write_text(gin.config_str())
  draft.replace(path)
  return str(path)


def run(main: Callable[[Sequence[str]], None],
        usage: str = "configure with --gin_file and --gin.KEY=VALUE") -> None:
  """absl's app.run with `--gin.KEY=VALUE` support and one-line UserErrors.

  Positional arguments are a UserError that ends with `usage`: binaries take flags only.
  An OSError is one line too: a full disk, a read-only folder, a file where a
  folder should be or a missing permission is the user's to fix. First of all, the program
  starts again with glibc's malloc on huge pages if it pays
  (`xla_flags.reexec_with_malloc_tunable`), and the project's XLA:CPU flags go into the
  environment, before JAX starts its backend.
  """
  xla_flags.reexec_with_malloc_tunable()
  xla_flags.set_cpu_flags()
  try:
    argv = rewrite_gin_args(sys.argv)
  except UserError as e:
    _exit_with(e)

  def guarded(args):
    try:
      if len(args) > 1:
        raise UserError(f"unexpected arguments {args[1:]}: {usage}")
      main(args)
    except UserError as e:
      _exit_with(e)
    except OSError as e:
      where = f" {e.filename}" if e.filename else ""
      _exit_with(UserError(f"cannot use{where} ({e.strerror or e}): free space or fix the path "
                           "and its permissions, then run again"))

  app.run(guarded, argv=argv)


def parse_flags_and_check(required_macros: Sequence[str]) -> None:
  """Parses --gin_file/--gin_bindings flags (after absl parsed argv)."""
  parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value, _GIN_SEARCH_PATHS.value)
  check_required_macros(required_macros)


def initialize_distributed_from_flags() -> None:
  """Joins a multi-process run from --coordinator_address etc. (or JAX's auto-detection)."""
  partitioning.maybe_initialize_distributed(
      _COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
      _AUTO_DISTRIBUTED.value, _INITIALIZATION_TIMEOUT.value)


def _first_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  location = next((l for l in lines if l.startswith("In file") or l.startswith("In bindings")), "")
  head = lines[0] if lines else type(e).__name__
  return f"{head} ({location})" if location and location != head else head


def _exit_with(e: UserError) -> None:
  # Gin appends "In call to configurable ..." lines to exceptions it passes through.
  print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
  sys.exit(2)
