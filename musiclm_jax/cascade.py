"""MusicLM inference: text → M_T → semantic → coarse → fine → SoundStream → 24 kHz audio.

  musiclm = Cascade(conditioning_tokenizer, acoustic_tokenizer, semantic_lm, coarse_lm, fine_lm)
  [generation] = musiclm.generate([Request.from_text("calm piano", seconds=10.0, seed=1)])
  generation.audio  # [samples] float32 at 24 kHz

Plain Python: the tokenizers are any objects with the `tokenizers/__init__.py`
protocols and each stage is a `StageLM(model, params)`; `load_musiclm` builds
one from export folders (what gin/musiclm.gin wires).

Every stage samples in windows of its training length (`Windows`, by default
the paper's crops and strides from `musiclm_spec`) as `window_plan` plans them.
The first window of a stage samples all its frames at once; later windows keep
the last (window - stride) of what was sampled as prefix and sample `stride`
new frames, so any duration is one continuous token stream. A window holds exactly
what the stage was trained on (`lm.py`, `data/token_layout.py`):

  semantic  [M | S(prefix)]                      -> S(new)
  semantic  [M | melody | S(prefix)]             -> S(new)  a stage trained with melody
  coarse    [M | S(prefix + new) | Ac(prefix)]   -> Ac(new)    2 Ac frames per S frame
  coarse    [M | melody | S(...) | Ac(prefix)]   -> Ac(new)    a stage trained with melody
  fine      [Ac(prefix + new) | Af(prefix)]      -> Af(new)

Story mode: a request is a list of (text, seconds) segments; windows of the
conditioned stages also end at segment boundaries and take the M_T of the
segment they sample. Continuation: the prompt audio's S and A tokens are the
history the first windows continue from (the output includes it). Melody: a
stage trained on [M | melody] reads, in each window, the melody codes of the
request's melody audio that `musiclm_spec.melody_frames` aligns with the
window (a melody shorter than the music repeats from its start, as a looped
riff); a request without melody gives it NULL melody tokens, as training's
melody dropout did. The codes are of the kind the stages were trained on:
the paper's melody tokens (the semantic stage; `melody_tokenizer`), or the
tune's pitch classes (`tokenizers/pitch.py`, no weights; either stage).

Randomness: window i of stage s of a request draws from
fold_in(fold_in(PRNGKey(seed), s), i) (`window_key`), and each row is sampled
as if alone, so a request's output does not depend on its batch-mates.
"""
import dataclasses
import functools
import importlib
import math
import time
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import decoding
from musiclm_jax import gin_models
from musiclm_jax import musiclm_spec as spec
from musiclm_jax import paths as paths_lib  # `paths` names the folders checked in load_cascade
from musiclm_jax import tokenizers
from musiclm_jax import window_plan
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.models import lm
from musiclm_jax.tokenizers import acoustic

SAMPLE_RATE_HZ = spec.SAMPLE_RATE_HZ  # of Generation.audio and continuations
DEFAULT_SAMPLING = {stage: decoding.SamplingConfig(temperature=temperature)
                    for stage, temperature in spec.PAPER_TEMPERATURES.items()}


class StageLM(NamedTuple):
  model: lm.DecoderOnlyLM
  params: Any


# The stage windows' owner is window_plan (JAX-free, for eval/joins.py too); gin binds them
# as cascade.Windows.* (gin/musiclm.gin, demo.py, README), and Cascade takes them.
Windows = window_plan.Windows


@dataclasses.dataclass(frozen=True)
class Request:
  """One piece of music to generate.

  segments: (text, seconds) pairs played in order; one pair is a plain text prompt.
  sampling: SamplingConfig per stage name; a stage left out samples with
    DEFAULT_SAMPLING (the paper's temperature, no filtering, no guidance).
  continuation: [samples] 24 kHz audio to continue from; it is the output's
    start, cut to whole 40 ms frames, and counts in the segments' seconds.
  melody: [samples] 24 kHz audio whose tune the music follows (hummed, sung,
    played), repeated when shorter than the music; needs a semantic stage
    trained with melody conditioning.
  """
  segments: tuple[tuple[str, float], ...]
  seed: int = 0
  sampling: tuple[tuple[str, decoding.SamplingConfig], ...] = ()
  continuation: np.ndarray | None = dataclasses.field(default=None, compare=False)
  melody: np.ndarray | None = dataclasses.field(default=None, compare=False)

  @classmethod
  def from_text(cls, text: str, seconds: float, **kwargs) -> "Request":
    return cls(((text, seconds),), **kwargs)

  @property
  def seconds(self) -> float:
    return float(sum(s for _, s in self.segments))

  def stage_sampling(self, stage: str) -> decoding.SamplingConfig:
    return dict(self.sampling).get(stage, DEFAULT_SAMPLING[stage])

  def boundaries(self) -> tuple[int, ...]:
    """Semantic frames where segments 1, 2, ... start."""
    return window_plan.segment_boundaries([s for _, s in self.segments])

  def num_semantic_frames(self) -> int:
    return window_plan.num_semantic_frames(self.seconds)

  def num_samples(self) -> int:
    return round(self.seconds * SAMPLE_RATE_HZ)

  def continuation_frames(self) -> int:
    if self.continuation is None:
      return 0
    return len(self.continuation) // spec.SAMPLES_PER_SEMANTIC_FRAME


class Chunk(NamedTuple):
  """One window a stage sampled: frames [prefix_start, start) were prefix, [start, end) new.

  Frames are semantic frames for the semantic and coarse stages, acoustic for fine.
  """
  stage: str
  segment: int
  prefix_start: int
  start: int
  end: int


@dataclasses.dataclass
class Generation:
  """A request's result: audio [samples] at 24 kHz, S [frames], A [2 * frames, levels], windows.

  levels: the codec's 12, or the 4 coarse ones when the cascade's decode_levels leaves the
  fine stage out.

  batch_seconds: wall time of the batch the request ran in.
  stage_seconds: the part of it each step took: semantic, coarse, fine (if run), decode
    (compiles included).
  mulan_text: M_T [segments, mulan_levels], the codes each segment's windows were
    conditioned on.
  """
  audio: np.ndarray
  semantic: np.ndarray
  acoustic: np.ndarray
  chunks: list[Chunk]
  batch_seconds: float
  stage_seconds: dict[str, float]
  mulan_text: np.ndarray


def window_key(seed: int, stage: str, index: int) -> jax.Array:
  """The PRNG key of window `index` of `stage` for a request with `seed`."""
  key = jax.random.PRNGKey(seed)
  return jax.random.fold_in(jax.random.fold_in(key, spec.STAGES.index(stage)), index)


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "cached", "max_length",
                                             "cache_length", "num_codes"))
def _sample_rows(model, params, prompts, prompt_length, steps, keys, sampling, *, num_steps,
                 cached, max_length, cache_length, num_codes):
  """prompts [batch, n] -> [batch, num_steps]; row b as if sampled alone with keys[b] [batch].

  Every window of a stage runs this one program: the prompts' first `prompt_length` columns
  are the prompt (the rest PAD_ID), and the first `steps` ids are sampled (int32 [], traced;
  `lm.DecoderOnlyLM.predict_batch`).
  sampling: `SamplingConfig.predict_kwargs()` of each row, stacked ([batch] per knob) and
  traced: one compile serves every setting, and rows with different knobs share a batch.
  num_codes: codes per level the stage may sample.
  """
  def one(prompt, key, knobs):
    return model.predict_batch(params, {"prompt_tokens": prompt[None]}, key,
                               decode_fn=decoding.temperature_sample, num_steps=num_steps,
                               cached=cached, max_length=max_length, cache_length=cache_length,
                               num_codes=num_codes, prompt_length=prompt_length, steps=steps,
                               **knobs)[0]
  return jax.vmap(one)(prompts, keys, sampling)


class Cascade:
  """MusicLM's three stages between a conditioning and an acoustic tokenizer.

  Args:
    conditioning_tokenizer: text -> M_T (MuLan + RVQ).
    acoustic_tokenizer: SoundStream (codes <-> 24 kHz waveform).
    semantic, coarse, fine: the stage LMs; fine may be None when decode_levels leaves it
      nothing to do (at most the coarse levels).
    semantic_tokenizer: audio -> S; only needed to continue from audio.
    melody_tokenizer: audio -> melody tokens; only needed for melody requests to stages
      trained on the paper's melody tokens (stages trained on pitch classes take a
      `PitchTokenizer` when it is None).
    windows: stage and decoder windows.
    use_cache: sample with the KV cache (False: full recompute, the reference).
    max_length: most tokens (BOS + prompt + new) in one window.
    sources: where the components came from (export paths), for results records.
    decode_levels: the audio is decoded from the first this many codec levels (None: all,
      the paper). The codec trains with quantizer dropout, so fewer levels are an input its
      decoder knows; a small run's stages sample its deeper levels near-uniformly, and
      decoding them adds noise (docs/design.md section 10). At most the coarse levels (4):
      the fine stage, the cascade's longest, is not run, and `Generation.acoustic` holds the
      coarse levels only.
  """

  def __init__(self, conditioning_tokenizer: tokenizers.ConditioningTokenizer,
               acoustic_tokenizer: tokenizers.AcousticTokenizer, semantic: StageLM,
               coarse: StageLM, fine: StageLM | None,
               semantic_tokenizer: tokenizers.SemanticTokenizer | None = None,
               windows: Windows = Windows(), use_cache: bool = True,
               max_length: int = lm.DEFAULT_MAX_LENGTH, sources: dict | None = None,
               melody_tokenizer: tokenizers.MelodyTokenizer | None = None,
               decode_levels: int | None = None):
    self.conditioning_tokenizer = conditioning_tokenizer
    self.acoustic_tokenizer = acoustic_tokenizer
    self.semantic_tokenizer = semantic_tokenizer
    self.stages = {"semantic": semantic, "coarse": coarse}
    if fine is not None:
      self.stages["fine"] = fine
    if melody_tokenizer is None and self.melody_kind == "pitch":
      melody_tokenizer = importlib.import_module("musiclm_jax.tokenizers.pitch").PitchTokenizer()
    self.melody_tokenizer = melody_tokenizer
    self.windows = windows
    self.use_cache = use_cache
    self.max_length = max_length
    self.sources = dict(sources or {})
    self.decode_levels = decode_levels
    windows.check(max_length, self.melody_kinds())
    _check_decode_levels(decode_levels, acoustic_tokenizer.num_levels)
    _check_fine_stage(fine is not None, decode_levels)
    _check_components(self)

  # Public API.

  def check_request(self, request: Request, max_seconds: float | None = None,
                    max_text_chars: int | None = None) -> None:
    """UserError (one line) if `request` cannot run; nothing is computed."""
    check_request(request, max_seconds, max_text_chars)
    self.check_supported(request)

  def check_supported(self, request: Request) -> None:
    """UserError (one line) if a `check_request`-valid request needs what this cascade lacks."""
    if request.continuation is not None and self.semantic_tokenizer is None:
      raise UserError("continuing from audio needs the semantic tokenizer: set "
                      "W2V_BERT_EXPORT_DIR and KMEANS_PATH")
    if request.melody is not None:
      if self.melody_kind is None:
        raise UserError("the stages were trained without melody conditioning: drop the melody, "
                        "or use stages trained with experiments/semantic_pitch_stage.gin")
      if self.melody_tokenizer is None:
        raise UserError("a melody prompt needs the melody tokenizer: set MELODY_EXPORT_DIR and "
                        "MELODY_RVQ_PATH")
    for stage, (model, _) in self.stages.items():
      top_k = request.stage_sampling(stage).top_k
      if top_k > model.vocab_size:
        raise UserError(f"top_k {top_k} of the {stage} stage exceeds its vocabulary of "
                        f"{model.vocab_size} ids: use 0 (all ids) or at most {model.vocab_size}")

  def melody_kinds(self) -> dict[str, str | None]:
    """{stage: the melody kind it reads, or None} (`StageConfig.melody_kind`)."""
    return {stage: model.stage.melody_kind for stage, (model, _) in self.stages.items()}

  @property
  def melody_kind(self) -> str | None:
    """The melody kind the stages read (one kind, `_check_components`), None if none does."""
    kinds = [kind for kind in self.melody_kinds().values() if kind]
    return kinds[0] if kinds else None

  def generate(self, requests: Sequence[Request], batch_size: int = 4) -> list[Generation]:
    """One Generation per request, in order."""
    out = [None] * len(requests)
    for index, generation in self.iter_generate(requests, batch_size):
      out[index] = generation
    return out

  def iter_generate(self, requests: Sequence[Request], batch_size: int = 4,
                    checked: bool = False) -> Iterator[tuple[int, Generation]]:
    """Yields (request index, Generation) as batches finish (batches: `plan_batches`).

    checked: the caller already ran `check_request` on every request (as
      musiclm-infer does, to report each line's error), so it is not run again.
    """
    if batch_size < 1:
      raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if not checked:
      for request in requests:
        self.check_request(request)
    for batch in plan_batches(requests, batch_size):
      generations = self._generate_batch([requests[i] for i in batch], batch_size)
      yield from zip(batch, generations)

  @property
  def runs_fine_stage(self) -> bool:
    """False when no fine level is decoded (decode_levels ≤ the coarse levels)."""
    return token_layout.decodes_fine_levels(self.decode_levels)

  # The cascade.

  def _generate_batch(self, requests: list[Request], batch_size: int) -> list[Generation]:
    started = time.perf_counter()
    rows = requests + [requests[-1]] * (bucket_size(len(requests), batch_size) - len(requests))
    first = rows[0]
    num_frames, start = first.num_semantic_frames(), first.continuation_frames()
    semantic = np.zeros((len(rows), num_frames), np.int32)
    acoustic = np.zeros((len(rows), num_frames * spec.ACOUSTIC_PER_SEMANTIC,
                         self.acoustic_tokenizer.num_levels), np.int32)
    if start:
      semantic[:, :start], acoustic[:, :start * spec.ACOUSTIC_PER_SEMANTIC] = self._tokenize(
          rows, start)
    # One MuLan call for the batch: rows of a batch share their number of segments.
    mulan = self.conditioning_tokenizer.text_tokens(
        [text for r in rows for text, _ in r.segments]).reshape(len(rows), len(first.segments), -1)
    melody = None  # [batch, melody frames, levels]; rows of a batch share the melody's length
    if first.melody is not None:
      # Looped to the music's length: without it the last melody frames would stand for the rest.
      samples = max(len(first.melody), first.num_samples())
      melody = self.melody_tokenizer.tokenize(np.stack([np.resize(r.melody, samples) for r in rows]))
    num_coarse = token_layout.COARSE.num_levels
    coarse, fine = acoustic[..., :num_coarse], acoustic[..., num_coarse:]
    steps = [("semantic", lambda: self._semantic(rows, mulan, semantic, start, melody)),
             ("coarse", lambda: self._coarse(rows, mulan, semantic, coarse, start, melody))]
    if self.runs_fine_stage:
      steps.append(("fine", lambda: self._fine(rows, coarse, fine, start)))
    else:
      acoustic = coarse  # the levels sampled
    chunks, stage_seconds = [], {}
    for stage, run in steps:
      stage_started = time.perf_counter()
      chunks += run()
      stage_seconds[stage] = time.perf_counter() - stage_started
    stage_started = time.perf_counter()
    audio = self._decode(acoustic[..., :self.decode_levels])
    stage_seconds["decode"] = time.perf_counter() - stage_started
    seconds = time.perf_counter() - started
    return [Generation(audio[i, :r.num_samples()], semantic[i], acoustic[i], chunks, seconds,
                       stage_seconds, np.asarray(mulan[i])) for i, r in enumerate(requests)]

  def _semantic(self, rows, mulan, semantic, start, melody) -> list[Chunk]:
    """Fills semantic [batch, frames] from frame `start` on (melody [batch, frames, levels] or None)."""
    layout = self.stages["semantic"].model.stage.layout
    boundaries = rows[0].boundaries()
    chunks = []
    for i, (prefix, begin, end) in enumerate(window_plan.stage_chunks(
        self.windows, "semantic", semantic.shape[1], start, boundaries)):
      segment = _segment(begin, boundaries)
      parts = [layout.encode("mulan", mulan[:, segment])]
      if self.melody_kinds()["semantic"]:
        parts.append(melody_ids(layout, self.melody_kind, melody, prefix, end, len(rows)))
      parts.append(layout.encode_stream("semantic", semantic[:, prefix:begin, None]))
      ids = self._sample("semantic", rows, i, np.concatenate(parts, 1), end - begin,
                          semantic.shape[1])
      semantic[:, begin:end] = layout.decode_stream("semantic", ids)[..., 0]
      chunks.append(Chunk("semantic", segment, prefix, begin, end))
    return chunks

  def _coarse(self, rows, mulan, semantic, coarse, start, melody) -> list[Chunk]:
    """Fills coarse [batch, 2 * frames, 4] from semantic frame `start` on (melody as `_semantic`)."""
    layout = self.stages["coarse"].model.stage.layout
    boundaries = rows[0].boundaries()
    per = spec.ACOUSTIC_PER_SEMANTIC
    chunks = []
    for i, (prefix, begin, end) in enumerate(window_plan.stage_chunks(
        self.windows, "coarse", semantic.shape[1], start, boundaries)):
      segment = _segment(begin, boundaries)
      melody_part = (melody_ids(layout, self.melody_kind, melody, prefix, end, len(rows))
                     if self.melody_kinds()["coarse"] else None)
      prompt = coarse_prompt(layout, mulan[:, segment], semantic, coarse, prefix, begin, end,
                             melody_part)
      ids = self._sample("coarse", rows, i, prompt, (end - begin) * per * coarse.shape[-1],
                          semantic.shape[1])
      coarse[:, begin * per:end * per] = layout.decode_stream("coarse", ids)
      chunks.append(Chunk("coarse", segment, prefix, begin, end))
    return chunks

  def _fine(self, rows, coarse, fine, start) -> list[Chunk]:
    """Fills fine [batch, acoustic frames, 8] from semantic frame `start` on."""
    layout = self.stages["fine"].model.stage.layout
    chunks = []
    for i, (prefix, begin, end) in enumerate(window_plan.stage_chunks(
        self.windows, "fine", coarse.shape[1] // spec.ACOUSTIC_PER_SEMANTIC, start)):
      prompt = np.concatenate([layout.encode_stream("coarse", coarse[:, prefix:end]),
                               layout.encode_stream("fine", fine[:, prefix:begin])], 1)
      ids = self._sample("fine", rows, i, prompt, (end - begin) * fine.shape[-1], fine.shape[1])
      fine[:, begin:end] = layout.decode_stream("fine", ids)
      chunks.append(Chunk("fine", 0, prefix, begin, end))
    return chunks

  def _sample(self, stage: str, rows: list[Request], index: int, prompt: np.ndarray,
              num_steps: int, num_frames: int) -> np.ndarray:
    """New ids [batch, num_steps] after prompt [batch, n] (window `index` of `stage` in music of
    `num_frames` frames of the stage)."""
    model, params = self.stages[stage]
    model.check_prompt(prompt)
    keys = jnp.stack([window_key(r.seed, stage, index) for r in rows])
    sampling = jax.tree.map(lambda *knobs: np.stack(knobs),
                            *[r.stage_sampling(stage).predict_kwargs() for r in rows])
    # The acoustic stages sample only codes the codec's books hold (they may be smaller
    # than the layout's 1024: scales/soundstream_tiny.gin).
    num_codes = None if stage == "semantic" else self.acoustic_tokenizer.codebook_size
    # Padded to the stage's window (`_window_shape`): first, later, last and story windows then
    # share one compiled program instead of one per prompt length and step count.
    width, max_steps, cache_length = self._window_shape(stage, num_frames)
    padded = np.pad(prompt, ((0, 0), (0, width - prompt.shape[1])),
                    constant_values=token_layout.PAD_ID)
    ids = _sample_rows(model, params, jnp.asarray(padded), np.int32(prompt.shape[1]),
                       np.int32(num_steps), keys, sampling, num_steps=max_steps,
                       cached=self.use_cache, max_length=self.max_length,
                       cache_length=cache_length, num_codes=num_codes)
    return np.asarray(ids)[:, :num_steps]

  def _window_shape(self, stage: str, num_frames: int) -> tuple[int, int, int]:
    """(prompt width, most new tokens, cache length) of every `stage` window's program in music
    of `num_frames` frames of the stage.

    A window holds at most a full window's tokens (`spec.window_tokens`: prompt + new), or
    all the music's when it is shorter, and samples at least one frame of its stream, so its
    prompt fits in that less one frame's targets and its new ids in that many frames' targets.
    Music shorter than a window gets a program of its own length, not a full window's.
    """
    frames = min(self.windows.frames(stage)[0], num_frames)
    tokens = spec.window_tokens(stage, frames, self.melody_kinds()[stage])
    # The stage's own stream (its target kind is its name) in one frame of the stage.
    per_frame = token_layout.KINDS[stage].num_levels * spec.stream_frames(stage, 1)[stage]
    return tokens - per_frame, frames * per_frame, tokens

  def _tokenize(self, rows: list[Request], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The continuations' S [batch, frames] and A [batch, 2 * frames, levels]."""
    audio = np.stack([r.continuation[:frames * spec.SAMPLES_PER_SEMANTIC_FRAME]
                      for r in rows])
    semantic = self.semantic_tokenizer.tokenize(audio)[:, :frames]
    acoustic = self.acoustic_tokenizer.encode(audio)[:, :frames * spec.ACOUSTIC_PER_SEMANTIC]
    return semantic, acoustic

  def _decode(self, codes: np.ndarray) -> np.ndarray:
    """A [batch, frames, levels] -> audio [batch, frames * SAMPLES_PER_ACOUSTIC_FRAME], by window."""
    window, context = self.windows.frames("decode")
    frames = codes.shape[1]
    pieces = []
    for begin in range(0, frames, window):
      end = min(frames, begin + window)
      low, high = max(0, begin - context), min(frames, end + context)
      audio = self.acoustic_tokenizer.decode(codes[:, low:high])
      pieces.append(audio[:, (begin - low) * spec.SAMPLES_PER_ACOUSTIC_FRAME:
                          (end - low) * spec.SAMPLES_PER_ACOUSTIC_FRAME])
    return np.concatenate(pieces, axis=1)


def coarse_prompt(layout: token_layout.TokenLayout, mulan: np.ndarray, semantic: np.ndarray,
                  coarse: np.ndarray, prefix: int, begin: int, end: int,
                  melody: np.ndarray | None = None) -> np.ndarray:
  """A coarse window's prompt ids [batch, n]: M, melody ids [batch, m] (`melody_ids`) for a
  stage trained with melody, S of semantic frames [prefix, end), and the coarse frames before
  `begin` in it (mulan [batch, levels], semantic [batch, frames], coarse [batch, 2 * frames,
  4]; `window_plan.stage_chunks` gives prefix, begin, end)."""
  per = spec.ACOUSTIC_PER_SEMANTIC
  melody = [] if melody is None else [melody]
  return np.concatenate([layout.encode("mulan", mulan), *melody,
                         layout.encode_stream("semantic", semantic[:, prefix:end, None]),
                         layout.encode_stream("coarse", coarse[:, prefix * per:begin * per])], 1)


def melody_ids(layout: token_layout.TokenLayout, kind: str, melody: np.ndarray | None, begin: int,
               end: int, batch: int) -> np.ndarray:
  """Ids [batch, n] of melody `kind` conditioning semantic frames [begin, end), from codes
  melody [batch, frames, levels]; NULL_ID without a melody."""
  if melody is None:
    first, last = spec.melody_frames(begin, end, kind=kind)
    return np.full((batch, (last - first) * token_layout.KINDS[kind].num_levels),
                   token_layout.NULL_ID, np.int32)
  first, last = spec.melody_frames(begin, end, melody.shape[1], kind)
  return layout.encode_stream(kind, melody[:, first:last])


def plan_batches(requests: Sequence[Request], batch_size: int) -> list[list[int]]:
  """Request indices of each batch, in the order they run.

  Requests with the same duration, segment boundaries, continuation length,
  melody length (or no melody) and kinds of sampling knobs (`_knob_kinds`)
  share batches of up to `batch_size` rows, whatever the knobs' values: the
  values are traced per row.
  """
  groups = {}
  for index, request in enumerate(requests):
    key = (request.num_semantic_frames(), request.boundaries(), request.continuation_frames(),
           None if request.melody is None else len(request.melody),
           tuple(_knob_kinds(request.stage_sampling(s)) for s in spec.STAGES))
    groups.setdefault(key, []).append(index)
  return [indices[first:first + batch_size] for indices in groups.values()
          for first in range(0, len(indices), batch_size)]


def bucket_size(num_requests: int, batch_size: int) -> int:
  """Rows a batch of `num_requests` runs as: the smallest power of two that holds them, at most batch_size.

  A lone request does the work of one row, not of `batch_size`, and a
  stage window compiles for at most log2(batch_size) + 2 batch shapes. The
  extra rows repeat a request and are dropped.
  """
  return min(batch_size, 1 << (num_requests - 1).bit_length())


def _knob_kinds(config: decoding.SamplingConfig) -> tuple:
  """What must be equal for rows to be sampled together: which knobs are off (None or left out).

  Guidance doubles a row's forward pass and a filter adds a sort, so rows with
  and without them compile to different programs.
  """
  return tuple((name, value is None) for name, value in sorted(config.predict_kwargs().items()))


def _segment(frame: int, boundaries: Sequence[int]) -> int:
  return int(np.searchsorted(boundaries, frame, side="right"))


def check_request(request: Request, max_seconds: float | None = None,
                  max_text_chars: int | None = None) -> None:
  """UserError (one line) for an empty or overlong text, a bad duration, seed, sampling or continuation.

  Every number must be finite: an infinite duration or a NaN temperature
  would otherwise overflow or silently turn into something else.
  """
  if not request.segments:
    raise UserError("a request needs at least one (text, seconds) segment")
  for text, seconds in request.segments:
    if not isinstance(text, str) or not text.strip():
      raise UserError("empty prompt text: write what the music should sound like")
    if max_text_chars is not None and len(text) > max_text_chars:
      raise UserError(f"prompt text has {len(text)} characters, more than the limit of "
                      f"{max_text_chars}: shorten it")
    if not _is_finite(seconds):
      raise UserError(f"duration must be a finite number of seconds, got {_short(seconds)}")
    if not seconds > 0:
      raise UserError(f"duration must be > 0 seconds, got {seconds}")
    if seconds * spec.SEMANTIC_RATE_HZ <= 0.5:  # rounds to no frame
      raise UserError(f"duration {seconds} s is shorter than one 40 ms frame: make it longer")
  if not math.isfinite(request.seconds * SAMPLE_RATE_HZ):
    raise UserError("the durations add up to more than a float holds: generate less")
  if max_seconds is not None and request.seconds > max_seconds:
    raise UserError(f"duration {request.seconds:g} s exceeds the limit of {max_seconds:g} s: "
                    "generate less or raise max_seconds")
  if not 0 <= request.seed < 2 ** 32:
    raise UserError(f"seed must be in [0, 2**32), got {_short(request.seed)}")
  for stage in spec.STAGES:
    config = request.stage_sampling(stage)
    for name in ("temperature", "top_p", "guidance_scale"):
      value = getattr(config, name)
      if value is not None and not _is_finite(value):
        raise UserError(f"{name} of the {stage} stage must be a finite number, got {_short(value)}")
  if request.melody is not None and (np.ndim(request.melody) != 1 or not np.size(request.melody)):
    raise UserError("the melody must be non-empty audio [samples] at 24 kHz")
  if request.continuation is not None:
    frames = request.continuation_frames()
    if frames < 1:
      raise UserError("the audio to continue from is shorter than one 40 ms frame")
    if frames >= request.num_semantic_frames():
      raise UserError(f"the audio to continue from ({frames / spec.SEMANTIC_RATE_HZ:g} s) is not "
                      f"shorter than the duration ({request.seconds:g} s): raise the duration")


def _check_decode_levels(decode_levels: int | None, num_levels: int) -> None:
  """UserError unless decode_levels is None or 1 .. the codec's num_levels."""
  if decode_levels is not None and not 1 <= decode_levels <= num_levels:
    raise UserError(f"decode_levels {decode_levels}: the codec has levels 1 to {num_levels}; "
                    "use one of them, or None for all")


def _check_fine_stage(has_fine_stage: bool, decode_levels: int | None) -> None:
  """UserError if the decoded levels include a fine one and there is no fine stage."""
  if not has_fine_stage and token_layout.decodes_fine_levels(decode_levels):
    raise UserError(f"decoding {decode_levels or 'all'} codec levels needs the fine stage: set "
                    f"FINE_EXPORT_DIR, or DECODE_LEVELS to at most {token_layout.COARSE.num_levels}")


def _is_finite(value) -> bool:
  """Whether `value` is a real number a float holds (huge Python ints overflow float())."""
  try:
    return not isinstance(value, bool) and math.isfinite(value)
  except (TypeError, OverflowError):
    return False


def _short(value, limit: int = 40) -> str:
  """repr(value) cut to `limit` characters, so a 5,000-digit number stays one short line."""
  if isinstance(value, int) and value.bit_length() > 128:  # repr() refuses over 4,300 digits
    return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
  text = repr(value)
  return text if len(text) <= limit else text[:limit] + "..."


def _check_components(cascade: Cascade) -> None:
  """UserError unless the tokenizers' codebooks and the stage LMs fit the stage layouts."""
  for name, (model, _) in cascade.stages.items():
    if getattr(model, "stage", None) is None or model.stage.name != name:
      found = getattr(getattr(model, "stage", None), "name", type(model).__name__)
      raise UserError(f"the {name} stage slot holds a {found} model: point it at a {name} stage export")
  conditioning, acoustic = cascade.conditioning_tokenizer, cascade.acoustic_tokenizer
  coarse, fine, mulan = token_layout.COARSE, token_layout.FINE, token_layout.MULAN
  if conditioning.num_levels != mulan.num_levels or conditioning.codebook_size > mulan.codebook_size:
    raise UserError(f"the conditioning tokenizer gives {conditioning.num_levels} x "
                    f"{conditioning.codebook_size} codes; the stages read {mulan.num_levels} x "
                    f"{mulan.codebook_size}")
  if (acoustic.num_levels != coarse.num_levels + fine.num_levels
      or acoustic.codebook_size > coarse.codebook_size):
    # Smaller books are fine: the stages then sample only the codes they hold (`_sample`).
    raise UserError(f"the acoustic tokenizer has {acoustic.num_levels} levels of "
                    f"{acoustic.codebook_size} codes; the stages sample "
                    f"{coarse.num_levels + fine.num_levels} levels of at most {coarse.codebook_size}")
  if acoustic.num_frames(SAMPLE_RATE_HZ) != spec.ACOUSTIC_RATE_HZ:
    raise UserError(f"the acoustic tokenizer must give {spec.ACOUSTIC_RATE_HZ} frames per "
                    f"second of {SAMPLE_RATE_HZ // 1000} kHz audio")
  semantic = cascade.semantic_tokenizer
  if semantic is not None and semantic.codebook_size > token_layout.SEMANTIC.codebook_size:
    raise UserError(f"the semantic tokenizer has {semantic.codebook_size} codes; the stages "
                    f"read {token_layout.SEMANTIC.codebook_size}")
  kinds = {kind for kind in cascade.melody_kinds().values() if kind}
  if len(kinds) > 1:
    raise UserError(f"the stages read different melody kinds ({cascade.melody_kinds()}): train "
                    "them with the same MELODY")
  melody, name = cascade.melody_tokenizer, cascade.melody_kind or "melody"
  kind = token_layout.KINDS[name]
  hop = spec.SEMANTIC_PER_MELODY_FRAME[name] / spec.SEMANTIC_RATE_HZ
  if melody is not None and ((melody.num_levels, melody.hop_seconds) != (
      kind.num_levels, hop) or melody.codebook_size > kind.codebook_size):
    raise UserError(f"the melody tokenizer gives {melody.num_levels} x {melody.codebook_size} "
                    f"codes every {melody.hop_seconds} s; the stages read {name} codes, "
                    f"{kind.num_levels} x {kind.codebook_size} every {hop} s")


# Loading from exports.

def _load_mulan(export_dir: str, rvq_path: str) -> tokenizers.ConditioningTokenizer:
  # Imported when used: the cascade (and its tests) must not need the MuLan or w2v-BERT modules.
  return importlib.import_module("musiclm_jax.tokenizers.conditioning").MuLanTokenizer.load(
      export_dir, rvq_path)


def _load_w2v_bert(export_dir: str, kmeans_path: str) -> tokenizers.SemanticTokenizer:
  return importlib.import_module("musiclm_jax.tokenizers.semantic").SemanticTokenizer.load(
      export_dir, kmeans_path)


def _load_melody(export_dir: str, rvq_path: str) -> tokenizers.MelodyTokenizer:
  return importlib.import_module("musiclm_jax.tokenizers.melody").MelodyTokenizer.load(
      export_dir, rvq_path)


def load_stage(export_dir: str) -> StageLM:
  """(model, params) of a stage LM export."""
  batch_spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, 1), jnp.int32)}
  return StageLM(*gin_models.load_export(export_dir, batch_spec))


def load_musiclm(*, mulan_export_dir: str, mulan_rvq_path: str, soundstream_export_dir: str,
                 semantic_export_dir: str, coarse_export_dir: str,
                 fine_export_dir: str | None = None,
                 w2v_bert_export_dir: str | None = None, kmeans_path: str | None = None,
                 melody_export_dir: str | None = None, melody_rvq_path: str | None = None,
                 windows: Windows = Windows(), use_cache: bool = True,
                 max_length: int = lm.DEFAULT_MAX_LENGTH, decode_levels: int | None = None,
                 conditioning_loader=_load_mulan, semantic_loader=_load_w2v_bert,
                 acoustic_loader=acoustic.SoundStreamTokenizer.load,
                 melody_loader=_load_melody) -> Cascade:
  """A Cascade from export folders; every path is checked before anything loads.

  w2v_bert_export_dir and kmeans_path are optional (only continuation needs
  them), and so are melody_export_dir and melody_rvq_path (only melody
  prompts), and fine_export_dir when decode_levels is at most the coarse levels.
  The loaders are the real tokenizers' `load`; tests pass stand-ins.
  """
  paths = {"MULAN_EXPORT_DIR": (mulan_export_dir, True), "MULAN_RVQ_PATH": (mulan_rvq_path, False),
           "SOUNDSTREAM_EXPORT_DIR": (soundstream_export_dir, True),
           "SEMANTIC_EXPORT_DIR": (semantic_export_dir, True),
           "COARSE_EXPORT_DIR": (coarse_export_dir, True)}
  if fine_export_dir is not None:
    paths.update(FINE_EXPORT_DIR=(fine_export_dir, True))
  if (w2v_bert_export_dir is None) != (kmeans_path is None):
    raise UserError("set both W2V_BERT_EXPORT_DIR and KMEANS_PATH (continuation) or neither")
  if w2v_bert_export_dir is not None:
    paths.update(W2V_BERT_EXPORT_DIR=(w2v_bert_export_dir, True), KMEANS_PATH=(kmeans_path, False))
  if (melody_export_dir is None) != (melody_rvq_path is None):
    raise UserError("set both MELODY_EXPORT_DIR and MELODY_RVQ_PATH (melody prompts) or neither")
  if melody_export_dir is not None:
    paths.update(MELODY_EXPORT_DIR=(melody_export_dir, True),
                 MELODY_RVQ_PATH=(melody_rvq_path, False))
  for name, (path, is_dir) in paths.items():
    if not (paths_lib.resolve(path).is_dir() if is_dir else paths_lib.resolve(path).is_file()):
      what = "export folder" if is_dir else "file"
      raise UserError(f"{name} {path!r} is not an existing {what}: fix the path")
  for name in ("SOUNDSTREAM_EXPORT_DIR", "SEMANTIC_EXPORT_DIR", "COARSE_EXPORT_DIR",
               "FINE_EXPORT_DIR"):
    if name in paths and not paths_lib.resolve(paths[name][0]).joinpath("config.gin").is_file():
      raise UserError(f"{name} {paths[name][0]!r} has no config.gin: point at a musiclm-export folder")
  windows.check(max_length)  # config mistakes before loading; Cascade counts melody tokens too
  _check_fine_stage(fine_export_dir is not None, decode_levels)
  semantic_tokenizer = (None if w2v_bert_export_dir is None
                        else semantic_loader(w2v_bert_export_dir, kmeans_path))
  melody_tokenizer = (None if melody_export_dir is None
                      else melody_loader(melody_export_dir, melody_rvq_path))
  return Cascade(conditioning_loader(mulan_export_dir, mulan_rvq_path),
                 acoustic_loader(soundstream_export_dir), load_stage(semantic_export_dir),
                 load_stage(coarse_export_dir),
                 None if fine_export_dir is None else load_stage(fine_export_dir),
                 semantic_tokenizer=semantic_tokenizer, windows=windows, use_cache=use_cache,
                 max_length=max_length, melody_tokenizer=melody_tokenizer,
                 decode_levels=decode_levels,
                 sources={name.lower(): paths_lib.join(path) for name, (path, _) in paths.items()})
