"""One writer per folder: a lock file that names its holder (host and pid).

Two trainers on one MODEL_DIR would delete each other's temporary checkpoint
folders and interleave metrics.jsonl. The lock is a file created atomically
(a hard link, which fails if the name exists); a second writer is refused
with the holder's host and pid. A lock whose process is gone (same host, pid
not running) is stale and taken over, with a warning; a lock from another
host cannot be checked and is reported. Object storage (gs://) has no atomic
create-if-absent through gfile: there the lock is skipped with a warning, and
keeping one writer per folder is the launcher's job.
"""
import json
import os
import socket

from absl import logging

from musiclm_jax import paths
from musiclm_jax.errors import UserError

LOCK_FILE = "LOCK"


class DirLock:
  """Holds `directory`/LOCK from `acquire` until `release`."""

  def __init__(self, directory: str, what: str = "trainer"):
    self.path = paths.join(directory, LOCK_FILE)
    self.enabled = paths.is_local(directory)
    self.what = what
    self._holder = {"host": socket.gethostname(), "pid": os.getpid()}

  def acquire(self) -> "DirLock":
    if not self.enabled:
      logging.warning("no lock on %s: object storage cannot hold one; make sure no other %s "
                      "writes there", os.path.dirname(self.path), self.what)
      return self
    # The holder is written to a private file first and linked into place, so a
    # lock file is never seen half-written.
    draft = f"{self.path}.{self._holder['host']}.{self._holder['pid']}"
    with open(draft, "w") as f:
      json.dump(self._holder, f)
    try:
      for _ in range(3):  # a stale lock removed by a rival at the same moment: look again
        try:
          os.link(draft, self.path)
          return self
        except FileExistsError:
          pass
        holder = self._read_holder()
        if holder is not None and not self._is_stale(holder):
          raise UserError(
              f"{os.path.dirname(self.path)} is in use by another {self.what} (host "
              f"{holder.get('host')}, pid {holder.get('pid')}): wait for it or stop it; if it is "
              f"gone, delete {self.path}")
        if holder is not None:
          logging.warning("taking over the stale lock %s of host %s, pid %s (not running)",
                          self.path, holder.get("host"), holder.get("pid"))
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
    finally:
      os.remove(draft)
    raise UserError(f"could not take the lock {self.path}: another process keeps taking it")

  def release(self) -> None:
    """Removes the lock if it is still ours."""
    if self.enabled and self._read_holder() == self._holder:
      os.remove(self.path)

  def __enter__(self) -> "DirLock":
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()

  def _read_holder(self) -> dict | None:
    """The holder, or None if the file is gone."""
    try:
      with open(self.path) as f:
        holder = json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}  # not ours to judge: reported as held
    return holder if isinstance(holder, dict) else {}

  def _is_stale(self, holder: dict) -> bool:
    if holder.get("host") != self._holder["host"] or not isinstance(holder.get("pid"), int):
      return False  # another machine's process cannot be checked from here
    try:
      os.kill(holder["pid"], 0)
    except ProcessLookupError:
      return True
    except PermissionError:  # running, under another user
      return False
    return False
