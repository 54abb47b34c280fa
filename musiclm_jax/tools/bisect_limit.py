"""The largest size a monotone test accepts, in O(log n) tries (e.g. the largest batch that compiles).

A library module without flags, so that tests and other tools import it
without defining aot_compile's command-line flags.
"""
from typing import Callable


def largest_fitting(fits: Callable[[int], bool], limit: int = 2**16) -> int:
  """The largest n in [1, limit] with fits(n) (0 if none), for monotone `fits`.

  Doubles until the first failure, then bisects: O(log n) compiles.
  """
  good, bad = 0, 1
  while bad <= limit and fits(bad):
    good, bad = bad, bad * 2
  bad = min(bad, limit + 1)
  while bad - good > 1:
    mid = (good + bad) // 2
    good, bad = (mid, bad) if fits(mid) else (good, mid)
  return good
