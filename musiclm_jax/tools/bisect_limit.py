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


def largest_fitting_linear(measure: Callable[[int], tuple[bool, float | None]], capacity: float,
                           limit: int = 2**16, first: int = 1, slope: float | None = None) -> int:
  """The largest n in [1, limit] that fits (0 if none), for a cost about linear in n.

  measure(n) -> (fits, cost): cost (e.g. bytes needed) may be None when unknown. Each
  next try is where the line through the bracket's ends (largest fit, smallest
  failure; the two nearest costs before a failure is seen) meets `capacity`, kept
  inside the bracket (regula falsi); when two tries have not halved the bracket, or a
  failure came without a cost, its midpoint instead. About 3-5 tries when the cost is
  near-linear and known. `first` and `slope` (cost per unit of n) may come from earlier
  measurements: the second try is then where that slope from the first try's cost meets
  `capacity` (next to `first` when it was well aimed), so a row takes 2-3 tries.
  """
  costs: dict[int, float] = {}
  good, bad, n = 0, limit + 1, min(max(first, 1), limit)
  widths = []  # of the bracket after each try since the first failure
  num_tries = 0
  while True:
    fits, cost = measure(n)
    num_tries += 1
    if cost is not None:
      costs[n] = cost
    good, bad = (n, bad) if fits else (good, n)
    if bad - good <= 1:
      return good
    if bad <= limit:
      widths.append(bad - good)
    ends = [k for k in (good, bad) if k in costs]
    points = ends if len(ends) == 2 else sorted(costs, key=lambda k: abs(k - n))[:2]
    guess = line_crossing([(k, costs[k]) for k in points], capacity)
    # A refusal without a cost, or a fit that costs more than `capacity` (the cost is not
    # what decides), says nothing about the line's error: bisect (or double) after it.
    if num_tries == 1 and slope and cost is not None:
      # The largest n the slope says fits: after a fit at least one more, to close the bracket.
      steps = int((capacity - cost) // slope)
      n = min(max(first + (max(steps, 1) if fits else steps), good + 1), bad - 1)
    elif (guess is None or (not fits and cost is None) or (fits and cost > capacity)
          or (len(widths) > 2 and widths[-1] > widths[-3] / 2)):
      n = (good + bad) // 2 if bad <= limit else (2 * good if good else 1)
    else:
      n = min(max(int(guess), good + 1), bad - 1)


def line_crossing(points, capacity: float) -> float | None:
  """Where the line through two (n, cost) points reaches `capacity` (None without a rising line)."""
  if len(points) < 2:
    return None
  (n1, c1), (n2, c2) = points
  slope = (c2 - c1) / (n2 - n1)
  return None if slope <= 0 else n1 + (capacity - c1) / slope
