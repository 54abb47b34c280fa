"""Does an audio embedding find a tune played on other instruments, whistled or hummed?

On held-out pieces (one clip each, its first `crop_seconds`), the candidates
are the mixes, one per piece. A query is another view of one piece's crop
(`data/melody_pairs`: the same notes on other instruments, a whistle, a hum);
it is right when the nearest candidate (cosine) is its own piece's mix.
recall@1 per view kind, against chance (1 / candidates). The melody embedder
should beat MuLan's audio embedding here: MuLan encodes timbre and genre,
which the views change, more than the tune, which they keep.
"""
from typing import Callable, Sequence

import numpy as np

from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.eval import retrieval

QUERY_VIEWS = (melody_pairs.PAIR,) + melody_voices.VOICES


def melody_retrieval(embed: Callable[[np.ndarray], np.ndarray],
                     clips: Sequence[melody_pairs.MelodyClip],
                     source: melody_pairs.MelodyPairBatchSource,
                     ks: Sequence[int] = (1, 5)) -> dict:
  """recall@k of each query view among the mixes of `clips`' pieces.

  embed: audio [batch, samples] -> [batch, D] unit vectors.
  clips: held-out clips; the first of each source piece is used.
  source: gives crop_seconds, the rate, the voices' variation and the seed.
  """
  firsts = {}
  for clip in clips:
    firsts.setdefault(clip.source_id, clip)
  pieces = list(firsts.values())
  crop = lambda clip: clip.audio[:source.crop_samples]
  candidates = _embed_all(embed, [crop(clip) for clip in pieces])
  result = {"num_candidates": len(pieces),
            **{f"chance_recall@{k}": min(k, len(pieces)) / len(pieces) for k in ks}}
  for view in QUERY_VIEWS:
    targets, audio = [], []
    for index, clip in enumerate(pieces):
      if view in source.views(clip, 0):
        targets.append(index)
        rng = np.random.default_rng([source.seed, index])
        audio.append(source.render_view(view, clip, 0, rng))
    if not targets:
      continue
    # Own mix of query i in column i, the other pieces after: retrieval.recall_at_k's layout.
    order = targets + [j for j in range(len(pieces)) if j not in targets]
    similarity = _embed_all(embed, audio) @ candidates[order].T
    result[view] = {"num_queries": len(targets),
                    **{f"recall@{k}": retrieval.recall_at_k(similarity, k) for k in ks}}
  return result


def _embed_all(embed, audio: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
  return np.concatenate([np.asarray(embed(np.stack(audio[i:i + batch_size])))
                         for i in range(0, len(audio), batch_size)])
