"""Does music follow its melody input, and does an embedding find a tune played otherwise?

Adherence (`melody_adherence`): pitch contours (pYIN, `audio/pitch.py`) of the
melody input and of the generated music, compared frame by frame as pitch
classes at the transposition that agrees best (music in another key still
follows the tune), against the same measure with another prompt's melody
(`melody_adherence`) or for music that was given another melody with the same
text (`swapped_melody_adherence`, the demo's measure).

Retrieval (`melody_retrieval`): does an audio embedding find a tune played on
other instruments, whistled or hummed?

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

from musiclm_jax.audio import pitch
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.errors import UserError
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


def pitch_class_agreement(reference: np.ndarray, other: np.ndarray) -> float:
  """Share of `reference`'s voiced frames where `other` has the same pitch class, best transposition.

  reference, other: MIDI contours [frames] (NaN where unvoiced, `pitch.pitch_contour`),
  compared over the shorter one. A frame where `other` has no pitch counts as
  a miss; 0.0 when the reference has no voiced frame.
  """
  n = min(len(reference), len(other))
  reference, other = np.asarray(reference[:n]), np.asarray(other[:n])
  voiced = np.isfinite(reference)
  if not voiced.any():
    return 0.0
  both = voiced & np.isfinite(other)
  shifts = (np.round(reference[both]) - np.round(other[both])).astype(int) % 12
  return float(np.bincount(shifts, minlength=12).max() / voiced.sum()) if both.any() else 0.0


def melody_adherence(generated: Sequence[np.ndarray], melodies: Sequence[np.ndarray],
                     sample_rate_hz: int) -> dict:
  """How well each generated clip [samples] follows its melody [samples], against a mismatched one.

  Pair i's mismatch is melody i + 1 (cyclically): the same measure for music
  that was not asked to follow it, so 'matched' above 'mismatched' is what
  adherence means. Returns {'num_pairs', 'matched', 'mismatched' (means),
  'matched_per_pair', 'mismatched_per_pair'}.
  """
  if len(generated) != len(melodies) or len(generated) < 2:
    raise UserError(f"melody adherence needs >= 2 (generated, melody) pairs, got "
                    f"{len(generated)} clips for {len(melodies)} melodies")
  music = _contours(generated, sample_rate_hz)
  tunes = _contours(melodies, sample_rate_hz)
  matched = [pitch_class_agreement(tunes[i], music[i]) for i in range(len(music))]
  mismatched = [pitch_class_agreement(tunes[(i + 1) % len(music)], music[i])
                for i in range(len(music))]
  return _summary(matched, mismatched)


def swapped_melody_adherence(followed: Sequence[np.ndarray], swapped: Sequence[np.ndarray],
                             melodies: Sequence[np.ndarray], sample_rate_hz: int) -> dict:
  """Does music follow the melody it was given more than music given another melody?

  followed[i] [samples]: generated with melodies[i]; swapped[i]: generated with
  the same text and seed but another melody. Both are measured against
  melodies[i]: the swapped figure is what the text, the seed and chance give,
  so 'matched' above 'mismatched' is what the melody conditioning adds.
  Returns melody_adherence's fields.
  """
  if not len(followed) == len(swapped) == len(melodies) >= 1:
    raise UserError(f"swapped melody adherence needs as many followed ({len(followed)}), "
                    f"swapped ({len(swapped)}) and melody ({len(melodies)}) clips, at least one")
  tunes = _contours(melodies, sample_rate_hz)
  matched, mismatched = ([pitch_class_agreement(t, m)
                          for t, m in zip(tunes, _contours(music, sample_rate_hz))]
                         for music in (followed, swapped))
  return _summary(matched, mismatched)


def _contours(clips: Sequence[np.ndarray], sample_rate_hz: int) -> list[np.ndarray]:
  return [pitch.pitch_contour(audio, sample_rate_hz)[0] for audio in clips]


def _summary(matched: list[float], mismatched: list[float]) -> dict:
  return {"num_pairs": len(matched), "matched": float(np.mean(matched)),
          "mismatched": float(np.mean(mismatched)), "matched_per_pair": matched,
          "mismatched_per_pair": mismatched}
