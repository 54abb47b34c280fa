"""The synth_music corpus: captioned music rendered offline, from a seed.

`plan_pieces` decides, from the seed alone, every source piece (a template
genre or a music21 score), its split and whether it gets a melody pair.
`generate_examples` composes or parses each piece, renders it with fluidsynth
(a few pieces at a time in threads), cuts it into clips, and labels and
captions each clip from what sounds in it. Splits never share a source piece.
The TFDS builder (`builder`) only wraps this.
"""
import collections
from concurrent import futures
import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tqdm

from musiclm_jax.audio import rates
from musiclm_jax.audio import validation
from musiclm_jax.data.synth_music import caption as caption_lib
from musiclm_jax.data.synth_music import compose
from musiclm_jax.data.synth_music import labels
from musiclm_jax.data.synth_music import render
from musiclm_jax.data.synth_music import scores
from musiclm_jax.data.synth_music import styles

TEMPLATE = "template"
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  """Size and make-up of a corpus.

  Attributes:
    num_clips: clips in all splits together.
    clip_seconds: length of every clip.
    clips_per_piece: consecutive clips cut from each source piece.
    score_fraction: share of pieces taken from music21's corpus.
    melody_pair_fraction: share of pieces also rendered with other instruments.
    split_fractions: validation and test shares of pieces; train gets the rest.
    seed: fixes everything drawn.
    sample_rate_hz: rate of the rendered audio.
    num_workers: fluidsynth processes at a time.
    extra_train_clips: clips of more training pieces, planned after the num_clips'
      from a stream of their own: they leave those clips' plan (and splits) as it is,
      so a corpus with them holds out the same pieces as the one without.
    reuse_training_scores: once the extra pieces have used every score of a kind
      (music21 holds 408 chorales), they render training pieces' scores again, at
      their own tempo, transposition and instruments; never a held-out piece's score.
      False: running out is an error.
  """
  num_clips: int
  clip_seconds: float = 10.0
  clips_per_piece: int = 2
  score_fraction: float = 0.3
  melody_pair_fraction: float = 0.25
  split_fractions: tuple[float, float] = (0.1, 0.1)
  seed: int = 0
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  num_workers: int = 2
  extra_train_clips: int = 0
  reuse_training_scores: bool = False

  @property
  def num_pieces(self) -> int:
    """Pieces of the num_clips (the extra training pieces not counted)."""
    return math.ceil(self.num_clips / self.clips_per_piece)

  @property
  def total_seconds(self) -> float:
    return (self.num_clips + self.extra_train_clips) * self.clip_seconds


@dataclasses.dataclass(frozen=True)
class PiecePlan:
  """One source piece, decided before anything is composed.

  Attributes:
    kind: TEMPLATE, scores.CHORALE or scores.FOLK_TUNE.
    what: the genre for a template, the corpus path for a score.
    rendering: 0 for a score's first piece, n for its n-th reuse
      (CorpusSpec.reuse_training_scores).
  """
  index: int
  kind: str
  what: str
  split: str
  num_clips: int
  has_melody_pair: bool
  rendering: int = 0

  @property
  def source_id(self) -> str:
    """The composition: a score's renderings share it, so grouping by it (melody
    negatives, held-out checks) never splits one score's music."""
    if self.kind == TEMPLATE:
      return f"template/{self.what}/{self.index:05d}"
    return f"music21/{self.what}"

  @property
  def piece_id(self) -> str:
    """Unique per planned piece: the source id, and the rendering of a reused score."""
    return self.source_id + (f"/rendering{self.rendering}" if self.rendering else "")


def _split_of_each_piece(rng: np.random.Generator, spec: CorpusSpec) -> list[str]:
  n = spec.num_pieces
  if n < len(SPLITS):
    raise ValueError(f"{n} pieces cannot fill train/validation/test; ask for at least "
                     f"{len(SPLITS) * spec.clips_per_piece} clips.")
  n_validation, n_test = (max(1, round(f * n)) for f in spec.split_fractions)
  splits = ["validation"] * n_validation + ["test"] * n_test
  splits += ["train"] * (n - len(splits))
  return [splits[i] for i in rng.permutation(n)]


# Seeds the extra training pieces' draws apart from the num_clips' stream.
_EXTRA_STREAM = 3


def plan_pieces(spec: CorpusSpec) -> list[PiecePlan]:
  """Every source piece of the corpus, from `spec.seed` alone: the num_clips' pieces, then
  the extra training pieces (their scores are ones the others do not use)."""
  rng = np.random.default_rng(spec.seed)
  n = spec.num_pieces
  score_kinds = (scores.CHORALE, scores.FOLK_TUNE)
  is_score, genre_order = _kinds_of_pieces(rng, n, spec.score_fraction)
  score_paths = {}
  for kind in score_kinds:
    paths = scores.corpus_paths(kind)
    score_paths[kind] = [paths[i] for i in rng.permutation(len(paths))]
  splits = _split_of_each_piece(rng, spec)
  has_pair = rng.random(n) < spec.melody_pair_fraction
  num_clips = _clips_of_each_piece(spec.num_clips, spec.clips_per_piece)
  if spec.extra_train_clips:
    extra_rng = np.random.default_rng([spec.seed, _EXTRA_STREAM])
    extra_clips = _clips_of_each_piece(spec.extra_train_clips, spec.clips_per_piece)
    m = len(extra_clips)
    extra_is_score, extra_genres = _kinds_of_pieces(extra_rng, m, spec.score_fraction)
    is_score = np.concatenate([is_score, extra_is_score])
    genre_order += extra_genres
    splits += ["train"] * m
    has_pair = np.concatenate([has_pair, extra_rng.random(m) < spec.melody_pair_fraction])
    num_clips += extra_clips
  plans, templates_made, scores_made = [], 0, 0
  training_scores = {kind: [] for kind in score_kinds}  # in the order pieces took them
  for index, clips in enumerate(num_clips):
    rendering = 0
    if is_score[index]:
      kind = score_kinds[scores_made % 2]
      paths, used = score_paths[kind], scores_made // 2
      scores_made += 1
      if used < len(paths):
        what = paths[used]
        if splits[index] == "train":
          training_scores[kind].append(what)
      elif spec.reuse_training_scores and index >= n and training_scores[kind]:
        # Every score of the kind is taken, so the training list is complete.
        cycle, position = divmod(used - len(paths), len(training_scores[kind]))
        what, rendering = training_scores[kind][position], cycle + 1
      else:
        raise ValueError(f"only {len(paths)} {kind} scores in music21's corpus; lower "
                         "score_fraction or num_clips, or reuse_training_scores for extra "
                         "training clips.")
    else:
      kind, what = TEMPLATE, genre_order[templates_made]
      templates_made += 1
    plans.append(PiecePlan(index=index, kind=kind, what=what, split=splits[index],
                           num_clips=clips, has_melody_pair=bool(has_pair[index]),
                           rendering=rendering))
  return plans


def _clips_of_each_piece(num_clips: int, clips_per_piece: int) -> list[int]:
  """Consecutive pieces of `clips_per_piece` clips (the last one shorter) holding `num_clips`."""
  return [min(clips_per_piece, num_clips - start) for start in range(0, num_clips, clips_per_piece)]


def _kinds_of_pieces(rng: np.random.Generator, n: int,
                     score_fraction: float) -> tuple[np.ndarray, list[str]]:
  """([n] whether each piece is a score, the genres the template pieces take in turn)."""
  is_score = np.zeros(n, bool)
  is_score[rng.permutation(n)[:round(n * score_fraction)]] = True
  genres = list(styles.GENRES)
  genre_order = [genres[i] for _ in range(math.ceil(n / len(genres)))
                 for i in rng.permutation(len(genres))]
  return is_score, genre_order[:n - is_score.sum()]


def make_piece(plan: PiecePlan, spec: CorpusSpec) -> labels.Piece:
  """Composes or parses the piece of `plan`. Raises scores.ScoreError."""
  rng = np.random.default_rng([spec.seed, plan.index])
  duration_s = plan.num_clips * spec.clip_seconds
  if plan.kind == TEMPLATE:
    return compose.compose(plan.what, duration_s, rng, plan.source_id)
  return scores.score_piece(plan.kind, plan.what, duration_s, rng, plan.source_id)


def melody_pair_of(piece: labels.Piece, plan: PiecePlan, spec: CorpusSpec) -> labels.Piece:
  """The same notes with a different instrument for every pitched part."""
  rng = np.random.default_rng([spec.seed, plan.index, 1])
  draw = compose.draw_instruments if piece.source == TEMPLATE else scores.draw_instruments
  return draw(piece, rng, avoid=piece)


def _in_order(function: Callable[[Any], Any], items: Iterable[Any],
              num_workers: int) -> Iterator[Any]:
  """function(item) for each item, `num_workers` at a time, yielded in order.

  At most 2 * num_workers results wait in memory, so a large corpus does not
  pile up rendered audio faster than it is written.
  """
  with futures.ThreadPoolExecutor(num_workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(function, item))
      if len(pending) > 2 * num_workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def _melody_feature(notes: list[labels.Note]) -> dict[str, list]:
  return {"pitch": [n.pitch for n in notes], "start_s": [n.start_s for n in notes],
          "end_s": [n.end_s for n in notes]}


def _parts_feature(clip: labels.ClipLabels) -> dict[str, list]:
  return {"role": [p.role for p in clip.parts], "instrument": [p.name for p in clip.parts],
          "program": [p.program for p in clip.parts], "pattern": [p.pattern for p in clip.parts]}


def _empty_pair() -> dict[str, Any]:
  return {"audio": np.zeros(0, np.float32), "caption": "", "instruments": [],
          "parts": {"role": [], "instrument": [], "program": [], "pattern": []}}


def clip_example(clip: labels.ClipLabels, clip_index: int, samples: np.ndarray,
                 caption: caption_lib.Caption, pair: dict[str, Any] | None) -> dict[str, Any]:
  """The TFDS example of one clip (features in `builder`)."""
  piece = clip.piece
  return {
      "audio": samples,
      "caption": caption.text,
      "aspect_list": caption.aspect_list,
      "source_id": piece.source_id,
      "source": piece.source,
      "title": piece.title,
      "genre": piece.genre,
      "style": piece.style,
      "ensemble": piece.ensemble,
      "instruments": clip.instruments,
      "parts": _parts_feature(clip),
      "tempo_bpm": float(piece.tempo_bpm),
      "key": piece.key,
      "mode": piece.mode,
      "mood": caption.mood,
      "has_drums": any(p.role == "drums" for p in clip.parts),
      "melody": _melody_feature(clip.melody),
      "clip_index": clip_index,
      "start_s": clip.start_s,
      "has_melody_pair": pair is not None,
      "melody_pair": pair or _empty_pair(),
  }


@dataclasses.dataclass
class _PieceJob:
  """A planned piece on its way through composing and rendering."""
  plan: PiecePlan
  piece: labels.Piece | None = None
  audio: np.ndarray | None = None
  pair_piece: labels.Piece | None = None
  pair_audio: np.ndarray | None = None
  error: str = ""


def _pieces(plans: list[PiecePlan], spec: CorpusSpec) -> Iterator[_PieceJob]:
  """Composed (not yet rendered) pieces; music21 is not thread-safe, so this
  runs in the calling thread."""
  for plan in plans:
    try:
      piece = make_piece(plan, spec)
    except scores.ScoreError as error:
      yield _PieceJob(plan, error=str(error))
      continue
    pair_piece = melody_pair_of(piece, plan, spec) if plan.has_melody_pair else None
    yield _PieceJob(plan, piece, pair_piece=pair_piece)


def _render(item: _PieceJob, spec: CorpusSpec, soundfont: str) -> _PieceJob:
  if item.piece is not None:
    item.audio = render.render(item.piece, spec.sample_rate_hz, soundfont)
    if item.pair_piece is not None:
      item.pair_audio = render.render(item.pair_piece, spec.sample_rate_hz, soundfont)
  return item


def generate_examples(spec: CorpusSpec, split: str, soundfont: str,
                      skipped: validation.SkippedAudio) -> Iterator[tuple[str, dict[str, Any]]]:
  """(key, example) for every clip of `split`, in plan order.

  Unusable scores and clips that fail `validation.check_audio` (e.g. a silent
  stretch of a score) are counted in `skipped`.
  """
  plans = [p for p in plan_pieces(spec) if p.split == split]
  clip_length = int(round(spec.clip_seconds * spec.sample_rate_hz))
  rendered = _in_order(lambda item: _render(item, spec, soundfont), _pieces(plans, spec),
                       spec.num_workers)
  for item in tqdm.tqdm(rendered, total=len(plans), unit="piece",
                        desc=f"synth_music {split}: rendering"):
    if item.piece is None:
      skipped.add_reason("unusable score", item.error, scores.ScoreError(item.error))
      continue
    for clip_index in range(item.plan.num_clips):
      start_s = clip_index * spec.clip_seconds
      window = slice(clip_index * clip_length, (clip_index + 1) * clip_length)
      samples = item.audio[window]
      source = f"{item.plan.piece_id} clip {clip_index}"
      try:
        validation.check_audio(samples, spec.sample_rate_hz, source=source)
      except validation.AudioError as error:
        skipped.add(error)
        continue
      clip = labels.clip_labels(item.piece, start_s, spec.clip_seconds)
      rng = np.random.default_rng([spec.seed, item.plan.index, 2, clip_index])
      caption = caption_lib.write_caption(clip, rng)
      pair = None
      if item.pair_piece is not None:
        pair_clip = labels.clip_labels(item.pair_piece, start_s, spec.clip_seconds)
        pair = {"audio": item.pair_audio[window],
                "caption": caption_lib.write_caption(pair_clip, rng).text,
                "instruments": pair_clip.instruments, "parts": _parts_feature(pair_clip)}
      yield f"{item.plan.piece_id}/{clip_index}", clip_example(
          clip, clip_index, samples, caption, pair)
