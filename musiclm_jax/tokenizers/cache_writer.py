"""musiclm-tokenize's work: a TFDS audio dataset through the frozen tokenizers into a token cache.

  tokenize_dataset(dataset="synth_music/tiny", data_dir="runs/tfds", cache_dir="runs/tokens",
                   semantic_tokenizer=..., acoustic_tokenizer=..., conditioning_tokenizer=...)

Each cache split (e.g. 'validation') reads one TFDS split spec (e.g. 'eval'
or 'train[90%:]') and is cut into shards of `clips_per_shard` consecutive
clips. Shard s is written by process s % process_count, so hosts of a
multi-host run write disjoint shards without talking to each other, and a
shard already on disk is skipped: rerunning the same command resumes.

Each clip is decoded, checked (`audio.validation`: NaN/Inf, silence, too short,
...), mixed to mono, resampled to 24 kHz when the dataset is at another rate,
and trimmed to a whole number of 40 ms semantic frames, so that
T_a = samples / 480 is exactly 2 * T_s = 2 * samples / 960. Clips are never
padded: padding would teach the stages silence that is not in the music.
Bad clips, and records TFDS cannot read, are counted by reason in the
shard's counts and the log, never a crash (unless on_bad_audio='raise').
Clips of equal length are tokenized together in batches of `batch_size`.
With a melody tokenizer, records also hold melody tokens (what a semantic
stage conditioned on [M | melody] trains on).
"""
import dataclasses
import sys
from typing import Any, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from musiclm_jax import musiclm_spec
from musiclm_jax import tokenizers as tokenizers_lib
from musiclm_jax.audio import io
from musiclm_jax.audio import validation
from musiclm_jax.data import tfds_audio
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError

SAMPLE_RATE_HZ = musiclm_spec.SAMPLE_RATE_HZ
SAMPLES_PER_SEMANTIC_FRAME = musiclm_spec.SAMPLES_PER_SEMANTIC_FRAME
SAMPLES_PER_ACOUSTIC_FRAME = musiclm_spec.SAMPLES_PER_ACOUSTIC_FRAME
# Bound on clips waiting for a full batch of their length (host memory).
_MAX_PENDING_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class Tokenizers:
  """The frozen tokenizers (the protocols of musiclm_jax/tokenizers/__init__.py); melody is optional."""
  semantic: tokenizers_lib.SemanticTokenizer
  acoustic: tokenizers_lib.AcousticTokenizer
  conditioning: tokenizers_lib.ConditioningTokenizer
  melody: tokenizers_lib.MelodyTokenizer | None = None

  def tokenize(self, audio: np.ndarray) -> tuple[np.ndarray, ...]:
    """audio [batch, samples], samples a multiple of 960 ->
    (M_A [batch, mulan_levels], S [batch, samples / 960], A [batch, samples / 480, levels],
    melody [batch, melody frames, melody_levels] or None without a melody tokenizer)."""
    batch, samples = audio.shape
    mulan = np.asarray(self.conditioning.audio_tokens(audio))
    semantic = np.asarray(self.semantic.tokenize(audio))
    acoustic = np.asarray(self.acoustic.encode(audio))
    expected = {"conditioning": (mulan, (batch, self.conditioning.num_levels),
                                 self.conditioning.codebook_size),
                "semantic": (semantic, (batch, samples // SAMPLES_PER_SEMANTIC_FRAME),
                             self.semantic.codebook_size),
                "acoustic": (acoustic, (batch, samples // SAMPLES_PER_ACOUSTIC_FRAME,
                                        self.acoustic.num_levels), self.acoustic.codebook_size)}
    melody = None
    if self.melody is not None:
      melody = np.asarray(self.melody.tokenize(audio))
      expected["melody"] = (melody, (batch, self.melody.num_frames(samples),
                                     self.melody.num_levels), self.melody.codebook_size)
    for name, (codes, shape, codebook_size) in expected.items():
      if codes.shape != shape:
        raise ValueError(f"the {name} tokenizer returned shape {codes.shape} for audio "
                         f"{audio.shape}, expected {shape}")
      if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"the {name} tokenizer returned codes outside [0, {codebook_size})")
    return (mulan.astype(np.int32), semantic.astype(np.int32), acoustic.astype(np.int32),
            None if melody is None else melody.astype(np.int32))

  def text_tokens(self, captions: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """M_T [mulan_levels] int32 of each caption; an empty array for an empty caption.

    Stored beside M_A so the stages can also learn from the tokens a text
    prompt gives at inference (`tasks.register_cache_task(text_rate=...)`).
    """
    tokens = [np.zeros([0], np.int32) for _ in captions]
    captioned = [i for i, caption in enumerate(captions) if caption]
    for start in range(0, len(captioned), batch_size):
      rows = captioned[start:start + batch_size]
      codes = np.asarray(self.conditioning.text_tokens([captions[i] for i in rows]))
      if codes.shape != (len(rows), self.conditioning.num_levels):
        raise ValueError(f"the conditioning tokenizer returned shape {codes.shape} for "
                         f"{len(rows)} captions, expected {(len(rows), self.conditioning.num_levels)}")
      for i, row in zip(rows, codes.astype(np.int32)):
        tokens[i] = row
    return tokens

  def describe(self) -> dict[str, Any]:
    """What identifies the tokens: class, sizes and any source paths the tokenizers expose."""
    def one(tokenizer, **sizes):
      info = dict(sizes, codebook_size=tokenizer.codebook_size,
                  **{"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}"})
      for attribute in ("export_dir", "kmeans_path", "rvq_path"):
        if getattr(tokenizer, attribute, None):
          info[attribute] = str(getattr(tokenizer, attribute))
      return info
    described = {"mulan": one(self.conditioning, num_levels=self.conditioning.num_levels,
                              text_tokens=True),
                 "semantic": one(self.semantic,
                                 frame_rate_hz=SAMPLE_RATE_HZ / SAMPLES_PER_SEMANTIC_FRAME),
                 "acoustic": one(self.acoustic, num_levels=self.acoustic.num_levels,
                                 frame_rate_hz=SAMPLE_RATE_HZ / SAMPLES_PER_ACOUSTIC_FRAME)}
    if self.melody is not None:
      described["melody"] = one(self.melody, num_levels=self.melody.num_levels,
                                hop_seconds=self.melody.hop_seconds)
    return described


@dataclasses.dataclass(frozen=True)
class _SplitPlan:
  """Cache split -> a contiguous range of one TFDS split, cut into shards."""
  spec: str
  tfds_split: str
  start: int
  num_clips: int
  num_shards: int

  def shard_range(self, shard: int) -> tuple[int, int]:
    """[from, to) clip indices of the TFDS split."""
    return (self.start + shard * self.num_clips // self.num_shards,
            self.start + (shard + 1) * self.num_clips // self.num_shards)


def _plan(builder, splits: Mapping[str, str], clips_per_shard: int) -> dict[str, _SplitPlan]:
  plans = {}
  for cache_split, spec in splits.items():
    try:
      ranges = tfds.core.ReadInstruction.from_spec(spec).to_absolute(builder.info.splits)
    except (ValueError, KeyError) as error:
      raise UserError(f"bad split {spec!r} for {builder.name}: {error}; use one of "
                      f"{list(builder.info.splits)}, optionally sliced like 'train[:90%]'") from None
    if len(ranges) != 1:
      raise UserError(f"split {spec!r} joins several ranges: give each cache split one range")
    (rng,) = ranges
    start = rng.from_ or 0  # None means the split's edge
    stop = builder.info.splits[rng.splitname].num_examples if rng.to is None else rng.to
    plans[cache_split] = _SplitPlan(spec, rng.splitname, start, stop - start,
                                    max(1, -(-(stop - start) // clips_per_shard)))
  return plans


def _skip_audio_decoding(features) -> dict[str, Any]:
  """TFDS decoders that leave every Audio feature encoded: we decode the one we need per clip."""
  decoders = {}
  for key, feature in features.items():
    if isinstance(feature, tfds.features.Audio):
      decoders[key] = tfds.decode.SkipDecoding()
    elif isinstance(feature, tfds.features.FeaturesDict):
      decoders[key] = _skip_audio_decoding(feature)
  return decoders


def _json_labels(example: Mapping[str, Any], decoders: Mapping[str, Any]) -> dict[str, Any]:
  """The example's features except audio, as JSON values (bytes become str)."""
  def convert(value):
    if isinstance(value, bytes):
      return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
      return [convert(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
      return value.item()
    if isinstance(value, list):
      return [convert(v) for v in value]
    return value
  labels = {}
  for key, value in example.items():
    if key in decoders and not isinstance(decoders[key], dict):
      continue
    if isinstance(value, Mapping):
      labels[key] = _json_labels(value, decoders.get(key, {}))
    else:
      labels[key] = convert(value)
  return labels


@dataclasses.dataclass(frozen=True)
class _ClipPrep:
  """Turns one decoded clip into [samples] float32 at 24 kHz, a multiple of 960 samples."""
  feature: Any
  sample_rate_hz: int
  checks: validation.AudioChecks
  max_seconds: float | None

  def __call__(self, raw, clip_id: str) -> np.ndarray:
    try:
      samples = np.asarray(self.feature.decode_example(raw))
    except Exception as error:  # pylint: disable=broad-except  (any decoder failure)
      raise validation.AudioError(validation.AudioProblem.UNREADABLE,
                                  f"cannot decode ({error})", clip_id) from None
    samples = io.pcm_to_float(samples)
    validation.check_audio(samples, self.sample_rate_hz, self.checks, source=clip_id)
    audio = io.resample(io.to_mono(samples), self.sample_rate_hz, SAMPLE_RATE_HZ)
    if self.max_seconds:
      audio = audio[:int(self.max_seconds * SAMPLE_RATE_HZ)]
    usable = len(audio) // SAMPLES_PER_SEMANTIC_FRAME * SAMPLES_PER_SEMANTIC_FRAME
    if not usable:
      raise validation.AudioError(validation.AudioProblem.TOO_SHORT,
                                  f"{len(audio)} samples is less than one semantic frame", clip_id)
    return audio[:usable]


class _Batcher:
  """Groups clips of equal length into batches and tokenizes them."""

  def __init__(self, tokenizers: Tokenizers, batch_size: int):
    self.tokenizers = tokenizers
    self.batch_size = batch_size
    self.pending: dict[int, list[tuple[Any, np.ndarray]]] = {}

  def add(self, key, audio: np.ndarray) -> list[tuple[Any, tuple[np.ndarray, ...]]]:
    """Queues a clip; returns (key, (M_A, S, A)) for every clip tokenized meanwhile."""
    bucket = self.pending.setdefault(len(audio), [])
    bucket.append((key, audio))
    if len(bucket) == self.batch_size:
      return self._run(len(audio))
    if sum(map(len, self.pending.values())) > _MAX_PENDING_BATCHES * self.batch_size:
      return self._run(max(self.pending, key=lambda n: len(self.pending[n])))
    return []

  def flush(self) -> list[tuple[Any, tuple[np.ndarray, ...]]]:
    return [done for length in list(self.pending) for done in self._run(length)]

  def _run(self, length: int):
    keys, clips = zip(*self.pending.pop(length))
    tokens = self.tokenizers.tokenize(np.stack(clips))
    return [(key, tuple(None if t is None else t[i] for t in tokens))
            for i, key in enumerate(keys)]


def _tokenize_shard(builder, plan: _SplitPlan, shard: int, prep: _ClipPrep, batcher: _Batcher,
                    audio_key: str, caption_key: str, skipped: validation.SkippedAudio,
                    progress) -> list[token_cache.Record]:
  start, stop = plan.shard_range(shard)
  decoders = _skip_audio_decoding(builder.info.features)
  ds = builder.as_dataset(
      split=tfds.core.ReadInstruction(plan.tfds_split, from_=start, to=stop, unit="abs"),
      shuffle_files=False, decoders=decoders,
      read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False))
  info, tokens, received, read_error = {}, {}, 0, None
  examples = ds.as_numpy_iterator()
  while True:
    try:
      example = next(examples)
    except StopIteration:
      break
    except tf.errors.OpError as error:
      # A corrupt record: TFRecord readers cannot find the records after it
      # in its file, so the rest of the range is counted as unreadable.
      read_error = str(error).splitlines()[0]
      break
    index = received
    received += 1
    progress.update(1)
    clip_id = example.pop("tfds_id").decode()
    try:
      audio = prep(example[audio_key], clip_id)
    except validation.AudioError as error:
      skipped.add(error)
      continue
    caption = example.get(caption_key, b"")
    info[index] = (clip_id, caption.decode("utf-8") if isinstance(caption, bytes) else str(caption),
                   _json_labels({k: v for k, v in example.items() if k != caption_key}, decoders),
                   len(audio))
    tokens.update(batcher.add(index, audio))
  progress.update(stop - start - received)
  detail = f"TFDS stopped at record {received}: {read_error or 'fewer records than listed'}"
  for _ in range(stop - start - received):
    skipped.add(validation.AudioError(validation.AudioProblem.UNREADABLE, detail,
                                      f"{plan.tfds_split}[{start}:{stop}]"))
  tokens.update(batcher.flush())
  order = sorted(info)
  text = batcher.tokenizers.text_tokens([info[i][1] for i in order], batcher.batch_size)
  return [token_cache.Record(clip_id=info[i][0], mulan=tokens[i][0], semantic=tokens[i][1],
                             acoustic=tokens[i][2], num_samples=info[i][3], caption=info[i][1],
                             labels=info[i][2], melody=tokens[i][3], mulan_text=text_tokens)
          for i, text_tokens in zip(order, text)]


def tokenize_dataset(*, dataset: str, cache_dir: str,
                     semantic_tokenizer: tokenizers_lib.SemanticTokenizer,
                     acoustic_tokenizer: tokenizers_lib.AcousticTokenizer,
                     conditioning_tokenizer: tokenizers_lib.ConditioningTokenizer,
                     melody_tokenizer: tokenizers_lib.MelodyTokenizer | None = None,
                     data_dir: str | None = None,
                     splits: Mapping[str, str] | Sequence[str] = ("train", "validation"),
                     clips_per_shard: int = 256, batch_size: int = 8,
                     min_seconds: float = 1.0, max_seconds: float | None = None,
                     audio_key: str = "audio", caption_key: str = "caption",
                     on_bad_audio: str = "skip",
                     process_index: int | None = None,
                     process_count: int | None = None) -> token_cache.CacheMetadata:
  """Tokenizes this process's shards of `dataset` into `cache_dir`; returns the cache's metadata.

  Args:
    dataset: TFDS name with config, e.g. 'synth_music/tiny', prepared in `data_dir`.
    cache_dir: the token cache folder (created; resumed if it holds a cache
      written with the same settings).
    melody_tokenizer: if given, records also hold melody tokens.
    splits: cache split -> TFDS split spec ({'validation': 'eval'}), or a list
      of split names kept as they are.
    clips_per_shard: clips per cache shard: the unit of resumption and of
      multi-host work.
    batch_size: clips tokenized at once.
    min_seconds: shorter clips are skipped as too short.
    max_seconds: longer clips keep only their first `max_seconds` (None: all of it).
    audio_key, caption_key: features holding the audio and the caption.
    on_bad_audio: 'skip' (count by reason) or 'raise'.
    process_index, process_count: this host's place in a multi-host run
      (default: JAX's); process p writes shards p, p + count, ...
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel  (only to ask which host this is)
    process_index, process_count = jax.process_index(), jax.process_count()
  if not 0 <= process_index < process_count:
    raise UserError(f"process_index {process_index} is not in [0, {process_count})")
  if not isinstance(splits, Mapping):
    splits = {split: split for split in splits}
  tokenizers = Tokenizers(semantic_tokenizer, acoustic_tokenizer, conditioning_tokenizer,
                          melody_tokenizer)
  # No rate required: clips are resampled to 24 kHz.
  builder, feature = tfds_audio.open_audio_dataset(dataset, data_dir, audio_key)
  plans = _plan(builder, splits, clips_per_shard)
  config = dict(tokenizers.describe(), dataset=dataset, splits=dict(splits),
                sample_rate_hz=SAMPLE_RATE_HZ, clips_per_shard=clips_per_shard,
                min_seconds=min_seconds, max_seconds=max_seconds, audio_key=audio_key,
                caption_key=caption_key)
  planned = {split: {"spec": plan.spec, "num_clips": plan.num_clips, "num_shards": plan.num_shards}
             for split, plan in plans.items()}
  token_cache.write_metadata(cache_dir, config, planned)

  mine = [(split, shard) for split, plan in plans.items() for shard in range(plan.num_shards)
          if shard % process_count == process_index]
  todo = [(split, shard) for split, shard in mine if not tf.io.gfile.exists(
      token_cache.shard_path(cache_dir, split, shard, plans[split].num_shards))]
  logging.info("process %d of %d: %d of its %d shards to write (%d already done)", process_index,
               process_count, len(todo), len(mine), len(mine) - len(todo))
  prep = _ClipPrep(feature, feature.sample_rate or SAMPLE_RATE_HZ,
                   validation.AudioChecks(min_seconds=min_seconds), max_seconds)
  batcher = _Batcher(tokenizers, batch_size)
  total = sum(np.subtract(*plans[s].shard_range(i)[::-1]) for s, i in todo)
  with tqdm.tqdm(total=int(total), disable=not sys.stderr.isatty(), desc="tokenize",
                 unit="clip") as progress:
    for split, shard in todo:
      plan = plans[split]
      skipped = validation.SkippedAudio(on_bad_audio)
      records = _tokenize_shard(builder, plan, shard, prep, batcher, audio_key, caption_key,
                                skipped, progress)
      path = token_cache.shard_path(cache_dir, split, shard, plan.num_shards)
      token_cache.write_shard(path, records, {"skipped": dict(skipped.counts),
                                              "skipped_examples": skipped.first_example})
      log = logging.warning if skipped.total else logging.info
      log("%s: %d records; %s", path, len(records), skipped.summary())
  metadata = token_cache.write_metadata(cache_dir, config, planned)
  for split, counts in metadata.splits.items():
    logging.info("%s %s: %d/%d shards, %d records, skipped %s", cache_dir, split,
                 counts["finished_shards"], counts["num_shards"], counts["num_records"],
                 counts["skipped"] or 0)
  return metadata
