"""How much does one context tell about an acoustic level's codes? Held-out CE of count tables.

  rows = level_information(train_acoustic, train_semantic, held_out_acoustic,
                           held_out_semantic, acoustic_codes=1024, semantic_codes=1024)

For each acoustic level q (1-based) the cross-entropy, in nats per token, of the
held-out clips' level-q codes under

  unigram         the train codes' frequencies (add-one smoothed)
  level_1         a table of the code given the same frame's level-1 code
  previous_level  ... given the same frame's level q - 1 code
  previous_frame  ... given the same level's code one frame (20 ms) before, within
                  the clip (a clip's first frame has a start context of its own)
  semantic        ... given the semantic token of the same time (S frame t // 2)

A table p(code | context) is counted on the train clips and interpolated with
the unigram, p = l * p_table + (1 - l) * p_unigram (a context the table never
saw gives the unigram). l is chosen from `WEIGHTS` on held-out train clips: the
tables are counted on the train clips but the last `TUNE_FRACTION` of them and
scored on those (contiguous, so clips cut from one piece mostly stay on one
side), then counted again on every train clip and scored on the held-out split
with that l. The validation split never picks anything, so the figure is not
optimistic; a weight chosen with fewer counts is if anything a little small.

This is an independent reference for what a stage can get from that one
context: a table CE clearly below the unigram shows the context predicts the
level; one equal to the unigram shows it holds no (pairwise) information a
table of this much data can find, and a stage reading only that context could
not do better than the code frequencies either. The level_1 row of level 1 and
the previous_level row of level 1 are None (the context is the target itself,
or does not exist).
"""
from typing import Sequence

import numpy as np

from musiclm_jax.errors import UserError

CONTEXTS = ("unigram", "level_1", "previous_level", "previous_frame", "semantic")
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TUNE_FRACTION = 0.1


def clip_contexts(acoustic: np.ndarray, semantic: np.ndarray, level: int,
                  acoustic_codes: int) -> dict[str, np.ndarray | None]:
  """{context: ids [T] int64, or None where it does not apply} of level `level` (0-based)
  of one clip, acoustic [T, levels] codes at 50 Hz, semantic [T // 2] codes at 25 Hz.

  The previous frame of frame 0 is `acoustic_codes` (a start id no code has).
  """
  frames = len(acoustic)
  codes = acoustic[:, level].astype(np.int64)
  return {
      "unigram": np.zeros(frames, np.int64),
      "level_1": acoustic[:, 0].astype(np.int64) if level else None,
      "previous_level": acoustic[:, level - 1].astype(np.int64) if level else None,
      "previous_frame": np.concatenate([[acoustic_codes], codes[:-1]]),
      "semantic": semantic[np.arange(frames) // 2].astype(np.int64),
  }


def _tables(contexts: np.ndarray, targets: np.ndarray, num_contexts: int,
            codes: int) -> tuple[np.ndarray, np.ndarray]:
  """(counts [num_contexts, codes], add-one unigram [codes]) counted from (context, code) pairs."""
  counts = np.bincount(contexts * codes + targets, minlength=num_contexts * codes)
  unigram = np.bincount(targets, minlength=codes) + 1.0
  return counts.reshape(num_contexts, codes).astype(np.float64), unigram / unigram.sum()


def _cross_entropies(tables: tuple[np.ndarray, np.ndarray], contexts: np.ndarray,
                     targets: np.ndarray) -> np.ndarray:
  """CE [len(WEIGHTS)] (nats per token) of the interpolated tables, one per weight."""
  counts, unigram = tables
  totals = counts.sum(axis=1)[contexts]
  # An unseen context has no table row: it gives the unigram whatever the weight.
  table = np.where(totals > 0, counts[contexts, targets] / np.maximum(totals, 1.0),
                   unigram[targets])
  weights = np.asarray(WEIGHTS)[:, None]
  return -np.log(weights * table + (1.0 - weights) * unigram[targets]).mean(axis=1)


def _check_clips(train_clips: int, held_out_clips: int) -> int:
  """The number of train clips that pick a table's weight; a one-line error if too few."""
  tune_clips = int(np.ceil(TUNE_FRACTION * train_clips))
  if train_clips - tune_clips < 1 or not held_out_clips:
    raise UserError(f"{train_clips} train and {held_out_clips} held-out clips: the tables need "
                    "2 train clips (one to count, one to pick the weight) and a held-out one")
  return tune_clips


def table_information(train_contexts: Sequence[np.ndarray], train_targets: Sequence[np.ndarray],
                      held_out_contexts: Sequence[np.ndarray],
                      held_out_targets: Sequence[np.ndarray], num_contexts: int,
                      codes: int) -> dict:
  """{'ce' (nats per target), 'weight'} of a table p(target | context) on the held-out clips.

  *_contexts, *_targets: per clip, ids [T] int in [0, num_contexts) and [0, codes). The table
  is counted on the train clips but the last TUNE_FRACTION of them, its weight (`WEIGHTS`)
  chosen on those, then counted again on every train clip and scored with that weight.
  """
  tune_clips = _check_clips(len(train_targets), len(held_out_targets))
  join = lambda arrays: np.concatenate(arrays).astype(np.int64)
  count = lambda contexts, targets: _tables(join(contexts), join(targets), num_contexts, codes)
  best = int(np.argmin(_cross_entropies(
      count(train_contexts[:-tune_clips], train_targets[:-tune_clips]),
      join(train_contexts[-tune_clips:]), join(train_targets[-tune_clips:]))))
  ce = _cross_entropies(count(train_contexts, train_targets), join(held_out_contexts),
                        join(held_out_targets))[best]
  return {"ce": float(ce), "weight": WEIGHTS[best]}


def unigram_information(train_targets: Sequence[np.ndarray], held_out_targets: Sequence[np.ndarray],
                        codes: int) -> dict:
  """{'ce', 'weight': 0.0}: the held-out CE of the train clips' add-one code frequencies, the
  table every `table_information` is interpolated with."""
  _check_clips(len(train_targets), len(held_out_targets))
  _, unigram = _tables(np.zeros(1, np.int64), np.concatenate(train_targets).astype(np.int64), 1,
                       codes)
  return {"ce": float(-np.log(unigram[np.concatenate(held_out_targets)]).mean()),
          "weight": WEIGHTS[0]}


def level_information(train_acoustic: Sequence[np.ndarray], train_semantic: Sequence[np.ndarray],
                      held_out_acoustic: Sequence[np.ndarray],
                      held_out_semantic: Sequence[np.ndarray], acoustic_codes: int,
                      semantic_codes: int) -> list[dict]:
  """Per acoustic level, {'level' (1-based), context: {'ce', 'weight'} or None for CONTEXTS}.

  *_acoustic: per clip codes [T, levels]; *_semantic: per clip codes [T // 2]. The unigram's
  weight is 0 (it is the table the others are interpolated with).
  """
  num_contexts = {"unigram": 1, "level_1": acoustic_codes, "previous_level": acoustic_codes,
                  "previous_frame": acoustic_codes + 1, "semantic": semantic_codes}
  rows = []
  for level in range(train_acoustic[0].shape[1]):
    contexts = [[clip_contexts(a, s, level, acoustic_codes) for a, s in zip(acoustic, semantic)]
                for acoustic, semantic in ((train_acoustic, train_semantic),
                                           (held_out_acoustic, held_out_semantic))]
    targets = [[a[:, level] for a in acoustic] for acoustic in (train_acoustic, held_out_acoustic)]
    row = {"level": level + 1}
    for name in CONTEXTS:
      if contexts[0][0][name] is None:
        row[name] = None
      elif name == "unigram":
        row[name] = unigram_information(targets[0], targets[1], acoustic_codes)
      else:
        row[name] = table_information([c[name] for c in contexts[0]], targets[0],
                                    [c[name] for c in contexts[1]], targets[1],
                                    num_contexts[name], acoustic_codes)
    rows.append(row)
  return rows
