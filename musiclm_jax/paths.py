"""Paths that may be local folders or shared storage: one layer for every file the project writes.

MODEL_DIR, EXPORT_DIR, token caches, k-means / RVQ .npz files and infer's output
go through `resolve`, which gives an `etils.epath.Path`: the path type orbax
itself uses, so a checkpoint folder and the files beside it take the same
URLs. Local paths use the os; `gs://` (and s3://, az://) go through TF's gfile
when TF is installed (fsspec otherwise), imported only when such a path is used.
`file://` URLs, which gfile and tensorstore accept but epath does not, are
local paths. Object storage has no atomic create-if-absent: `is_local` tells
callers (dir_lock) where a lock file cannot work.
"""
import os
import re

from etils import epath

_FILE_URL = "file://"
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")


def resolve(path: str | os.PathLike) -> epath.Path:
  """The path as an epath.Path: `file://` URLs and relative local paths made absolute local paths."""
  path = os.fspath(path)
  if path.startswith(_FILE_URL):
    path = path[len(_FILE_URL):]
  return epath.Path(path if is_url(path) else os.path.abspath(path))


def is_local(path: str | os.PathLike) -> bool:
  """Whether `path` is on this machine's file system (a plain path or a `file://` URL)."""
  return not is_url(path) or os.fspath(path).startswith(_FILE_URL)


def is_url(path: str | os.PathLike) -> bool:
  """Whether `path` starts with a scheme (`gs://`, `file://`, ...)."""
  return _URL.match(os.fspath(path)) is not None


def join(path: str | os.PathLike, *names: str) -> str:
  """`path`/`names`... as a string, URLs kept whole (os.path.abspath would mangle `gs://`)."""
  return os.fspath(resolve(path).joinpath(*names))
