"""Does music follow its melody input, and does an embedding find a tune played otherwise?

Adherence (`melody_adherence`): the melody input's pitch contour (pYIN,
`audio/pitch.py`: the input is one voice) against the music's pitch classes
(basic-pitch's notes folded into 12 classes, `eval/pitch_model.py`: music is
many voices). A frame of the tune agrees when its pitch class is among the
music's TOP_PITCH_CLASSES strongest there (the tune's note over a chord), at
the transposition that agrees best (music in another key still follows the
tune). It is measured against the same figure with another prompt's melody
(`melody_adherence`) or for music that was given another melody with the same
text (`swapped_melody_adherence`, the demo's measure).

Why not pYIN on the music too: pYIN follows one voice, and in a mix it names
the bass, a chord or nothing; on the demo's generated music it found no
voiced frame at all, so every clip scored 0 for its own melody and for
another. On the first 40 held-out pieces of the demo's corpus, each piece's
real mix against its hummed or whistled tune and against the next piece's
(`benchmarks/melody_adherence.py 40 10 runs/demo/tfds`):

  music's pitch read by              own tune  another tune  pieces own > another
  pYIN (one voice)                   0.22      0.12          35 of 40
  basic-pitch, strongest class       0.33      0.21          33 of 40
  basic-pitch, 3 strongest classes   0.67      0.43          36 of 40

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

from musiclm_jax.audio import pitch as audio_pitch
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.errors import UserError
from musiclm_jax.eval import pitch_model
from musiclm_jax.eval import retrieval

QUERY_VIEWS = (melody_pairs.PAIR,) + melody_voices.VOICES
TOP_PITCH_CLASSES = 3  # a melody note and the two other notes of a triad under it


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


def embedder_retrieval(melody_export_dir: str, dataset: str, data_dir: str,
                       splits: Sequence[str] = ("validation",),
                       mulan_export_dir: str | None = None) -> dict:
  """`melody_retrieval` of a melody embedder export (and of MuLan's audio embedding, given its
  export) on the held-out `splits` of a synth_music `dataset`: {'melody_embedder': ...,
  'mulan_audio': ...}. Crops are the embedder's window."""
  import jax  # pylint: disable=import-outside-toplevel  (the adherence measure needs no JAX)
  from musiclm_jax.tokenizers import conditioning  # pylint: disable=import-outside-toplevel
  from musiclm_jax.tokenizers import melody as melody_tokenizer  # pylint: disable=import-outside-toplevel
  model, params = melody_tokenizer.load_melody_embedder(melody_export_dir)
  source = melody_pairs.MelodyPairBatchSource(dataset, data_dir=data_dir,
                                              crop_seconds=model.config.window_seconds)
  clips = [clip for split in splits
           for clip in melody_pairs.load_melody_clips(dataset, data_dir, split,
                                                      source.sample_rate_hz, source.crop_samples)]
  embed = jax.jit(model.embed_windows)
  result = {"melody_embedder": melody_retrieval(lambda a: embed(params, a), clips, source)}
  if mulan_export_dir is not None:
    mulan_model, mulan_params = conditioning.load_mulan(mulan_export_dir)
    embed_mulan = jax.jit(mulan_model.embed_audio)
    result["mulan_audio"] = melody_retrieval(lambda a: embed_mulan(mulan_params, a), clips,
                                             source)
  return result


def _embed_all(embed, audio: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
  return np.concatenate([np.asarray(embed(np.stack(audio[i:i + batch_size])))
                         for i in range(0, len(audio), batch_size)])


def pitch_class_agreement(tune: np.ndarray, music: np.ndarray,
                          top: int = TOP_PITCH_CLASSES) -> float:
  """Share of `tune`'s voiced frames whose pitch class is among `music`'s `top` strongest, at
  the transposition that agrees best.

  tune: MIDI contour [frames] (NaN where unvoiced, `audio_pitch.pitch_contour`). music:
  pitch-class salience [frames, 12] (column 0 C) on the same frame grid; compared over the
  shorter one. Ties count against the tune's class: a frame agrees only when at most `top`
  classes (its own included) are at least as strong, so a flat profile or silence names no
  class. 0.0 when the tune has no voiced frame.
  """
  n = min(len(tune), len(music))
  tune, music = np.asarray(tune[:n]), np.asarray(music[:n])
  voiced = np.isfinite(tune)
  if not voiced.any():
    return 0.0
  classes, salience = np.round(tune[voiced]).astype(int) % 12, music[voiced]
  frames = np.arange(len(classes))
  agreeing = [np.sum((salience >= salience[frames, (classes + shift) % 12, None]).sum(axis=1)
                     <= top) for shift in range(12)]
  return float(max(agreeing) / voiced.sum())


def music_pitch_classes(pitch: pitch_model.BasicPitch, audio: np.ndarray,
                        sample_rate_hz: int) -> np.ndarray:
  """audio [samples] -> pitch-class salience [frames, 12] on `audio_pitch.pitch_contour`'s
  frame grid (each contour frame takes basic-pitch's nearest frame)."""
  salience = pitch_model.pitch_classes(pitch(audio, sample_rate_hz), pitch.lowest_midi_pitch)
  frames_per_second = audio_pitch.FRAMES_PER_SECOND
  times = np.arange(int(len(audio) / sample_rate_hz * frames_per_second) + 1) / frames_per_second
  nearest = np.round(times * pitch.frames_per_second).astype(int)
  return salience[np.minimum(nearest, len(salience) - 1)]


def melody_adherence(generated: Sequence[np.ndarray], melodies: Sequence[np.ndarray],
                     sample_rate_hz: int, pitch: pitch_model.BasicPitch) -> dict:
  """How well each generated clip [samples] follows its melody [samples], against a mismatched one.

  Pair i's mismatch is melody i + 1 (cyclically): the same measure for music
  that was not asked to follow it, so 'matched' above 'mismatched' is what
  adherence means. Returns {'num_pairs', 'top_pitch_classes', 'matched', 'mismatched'
  (means), 'matched_per_pair', 'mismatched_per_pair'}.
  """
  if len(generated) != len(melodies) or len(generated) < 2:
    raise UserError(f"melody adherence needs >= 2 (generated, melody) pairs, got "
                    f"{len(generated)} clips for {len(melodies)} melodies")
  music = [music_pitch_classes(pitch, audio, sample_rate_hz) for audio in generated]
  tunes = _contours(melodies, sample_rate_hz)
  matched = [pitch_class_agreement(tunes[i], music[i]) for i in range(len(music))]
  mismatched = [pitch_class_agreement(tunes[(i + 1) % len(music)], music[i])
                for i in range(len(music))]
  return _summary(matched, mismatched)


def swapped_melody_adherence(followed: Sequence[np.ndarray], swapped: Sequence[np.ndarray],
                             melodies: Sequence[np.ndarray], sample_rate_hz: int,
                             pitch: pitch_model.BasicPitch) -> dict:
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
  matched, mismatched = ([pitch_class_agreement(tune, music_pitch_classes(pitch, audio,
                                                                          sample_rate_hz))
                          for tune, audio in zip(tunes, clips)]
                         for clips in (followed, swapped))
  return _summary(matched, mismatched)


def _contours(clips: Sequence[np.ndarray], sample_rate_hz: int) -> list[np.ndarray]:
  return [audio_pitch.pitch_contour(audio, sample_rate_hz)[0] for audio in clips]


def _summary(matched: list[float], mismatched: list[float]) -> dict:
  return {"num_pairs": len(matched), "top_pitch_classes": TOP_PITCH_CLASSES,
          "matched": float(np.mean(matched)),
          "mismatched": float(np.mean(mismatched)), "matched_per_pair": matched,
          "mismatched_per_pair": mismatched}
