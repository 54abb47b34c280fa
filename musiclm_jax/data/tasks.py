"""SeqIO tasks of the three stages over token caches (`data/token_cache.py`).

An example is one random crop of one cached clip, as a 'targets' sequence
in the stage's `token_layout`:

  semantic  [M_A | S]             crop 30 s (paper): 12 + 750 tokens
  semantic  [M_A | melody | S]    with melody=True: + 10 melody frames x 24 (3 s hop)
  semantic  [M_A | pitch | S]     with melody='pitch': + 375 frames of the tune's pitch class
                                  (80 ms hop, from the clip's melody labels; coarse too)
  coarse    [M_A | S | Ac]        crop 10 s: 12 + 250 + 500 x 4 tokens
  fine      [Ac | Af]             crop 3 s: 150 x 4 + 150 x 8 tokens

Multi-level streams are flattened time-major, levels interleaved. In the
coarse stage the S and Ac crops cover the same time (acoustic frames 2 s0 ..
2 (s0 + n) for semantic frames s0 .. s0 + n). A clip shorter than the crop is
kept whole, never padded: the sequence is shorter, and the feature converter
pads it with PAD ids that carry no loss. The conditioning is the clip's M_A
(the paper), or with probability `text_rate` its caption's M_T when the cache
holds one: the tokens a text prompt gives at inference, which MuLan's
modality gap keeps apart from M_A at small scale (beyond the paper, as
MusicGen trains on text). Crops are drawn by `crop_ids`, per
example: through SeqIO from SeqIO's seeds (SeqIO repeats before these
preprocessors), and in the trainer's pipeline from (seed, epoch, index) through
`CacheExamples`, which reads record i of the cache directly. Either way the
same `seed` gives the same crops, and every epoch new ones. Each split of the
task is the cache's own split. Register from gin, without code, with the name
as the value:

  MIXTURE_OR_TASK_NAME = @tasks.register_cache_task()
  TASK_FEATURE_LENGTHS = @tasks.feature_lengths()
  tasks.register_cache_task.cache_dirs = [%TOKEN_CACHE_DIR]   # several: a mixture

Besides 'targets', task examples carry 'clip_id' and 'crop_start_frame' (50 Hz
frames) to trace a sequence back to its clip; the feature converter drops them.
"""
import dataclasses
import functools
import json
from typing import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.data import tune_pitch
from musiclm_jax.errors import UserError

LAYOUTS = {name: stage.layout for name, stage in spec.STAGE_CONFIGS.items()}
_COARSE_LEVELS = token_layout.COARSE.num_levels
# name -> the arguments it was registered with, to re-register on a change.
_REGISTERED: dict[str, tuple] = {}
# task name -> its examples by index, for `pipeline`.
_RANDOM_ACCESS: dict[str, "CacheExamples"] = {}


def stage_sequence(layout: token_layout.TokenLayout, codes: Mapping[str, np.ndarray]) -> np.ndarray:
  """The one way stage sequences are built (also by `synthetic.stage_tasks`).

  codes: for each kind of `layout`, codes [..., frames, levels] (no offsets).
  Returns ids [..., sum of frames * levels] int32: the kinds in the layout's order.
  """
  names = [kind.name for kind in layout.kinds]
  if set(codes) != set(names):
    raise ValueError(f"{layout} needs codes of {names}, got {sorted(codes)}")
  return np.concatenate([layout.encode_stream(name, codes[name]) for name in names],
                        axis=-1).astype(np.int32)


def _check_stage(stage: str, melody: bool | str | None = False) -> None:
  if stage not in spec.STAGES:
    raise UserError(f"unknown stage {stage!r}: use one of {', '.join(spec.STAGES)}")
  if spec.melody_kind(melody) and stage == "fine":
    raise UserError("melody conditioning is for the semantic and coarse stages, not fine: unset "
                    "melody")


def _layout(stage: str, melody: bool | str | None) -> token_layout.TokenLayout:
  """The layout of `stage`'s sequences when it reads melody kind `melody` (`spec.melody_kind`)."""
  kind = spec.melody_kind(melody)
  if kind is None:
    return LAYOUTS[stage]
  return {"semantic": spec.semantic_stage, "coarse": spec.coarse_stage}[stage](kind).layout


def clip_melody(melody: bool | str | None, melody_tokens: np.ndarray | None, labels,
                semantic_frames: int) -> np.ndarray | None:
  """A cached clip's codes [frames, levels] of the melody kind a stage reads (None: none).

  'melody' (True): its melody tokens. 'pitch': its melody labels' pitch classes
  (`tune_pitch.from_labels`; labels a dict or its JSON), for its `semantic_frames`.
  """
  kind = spec.melody_kind(melody)
  if kind != "pitch":
    return None if kind is None else melody_tokens
  if isinstance(labels, (bytes, str)):
    labels = json.loads(labels)
  per = spec.SEMANTIC_PER_MELODY_FRAME["pitch"]
  return tune_pitch.from_labels(labels, -(-semantic_frames // per))


def _crop_stage_frames(stage: str, crop_seconds: float | None) -> int:
  """Frames of a `stage` crop: semantic (40 ms) for the semantic and coarse stages, acoustic
  (20 ms) for fine, which has no semantic tokens."""
  _check_stage(stage)
  seconds = spec.PAPER_CROP_SECONDS[stage] if crop_seconds is None else crop_seconds
  if stage == "fine":
    acoustic = int(round(seconds * spec.ACOUSTIC_RATE_HZ))
    if acoustic < 1:
      raise UserError(f"crop of {seconds} s is shorter than one 20 ms acoustic frame")
    return acoustic
  semantic = int(round(seconds * spec.SEMANTIC_RATE_HZ))
  if semantic < 1:
    raise UserError(f"crop of {seconds} s is shorter than one 40 ms semantic frame")
  return semantic


def crop_frames(stage: str, crop_seconds: float | None = None) -> dict[str, int]:
  """Frames of each cropped stream of `stage`: {'semantic': 750} for a 30 s semantic crop."""
  return spec.stream_frames(stage, _crop_stage_frames(stage, crop_seconds))


def feature_lengths(stage: str, crop_seconds: float | None = None,
                    melody: bool | str | None = False) -> dict[str, int]:
  """{'targets': tokens of a full crop}: TASK_FEATURE_LENGTHS for `stage` (melody: [M | melody | S])."""
  _check_stage(stage, melody)
  return {"targets": spec.window_tokens(stage, _crop_stage_frames(stage, crop_seconds), melody)}


def _parse(ex: Mapping[str, tf.Tensor], acoustic_levels: int) -> dict[str, tf.Tensor]:
  return {"clip_id": ex["clip_id"], "mulan": ex["mulan_tokens"],
          "mulan_text": ex["mulan_text_tokens"], "semantic": ex["semantic_tokens"],
          "acoustic": tf.reshape(ex["acoustic_tokens"], [-1, acoustic_levels]),
          "melody": tf.reshape(ex["melody_tokens"], [-1, token_layout.MELODY.num_levels]),
          "labels_json": ex["labels_json"]}


def _crop_start(rng: np.random.Generator, length: int, crop: int) -> int:
  """Uniform start in [0, length - crop], or 0 when the clip is shorter than the crop."""
  return int(rng.integers(0, max(length - crop, 0) + 1))


def crop_ids(stage: str, frames: Mapping[str, int], mulan: np.ndarray, semantic: np.ndarray,
             acoustic: np.ndarray, rng: np.random.Generator,
             melody: np.ndarray | None = None, mulan_text: np.ndarray | None = None,
             text_rate: float = 0.0, melody_kind: str = "melody") -> tuple[np.ndarray, int]:
  """One random crop of a cached clip as a stage sequence: the one place crops are drawn.

  Args:
    frames: `crop_frames(stage)`.
    mulan: M_A [mulan_levels]; semantic: S [T_s]; acoustic: A [T_a, levels], T_a == 2 T_s.
    rng: draws the crop's start, then whether M_T replaces M_A (the SeqIO
      task seeds it from SeqIO's seeds, `CacheExamples` from the pipeline's
      (seed, epoch, index)).
    melody: codes [T_m, levels] of `melody_kind` (`clip_melody`) for a stage conditioned
      on [M | melody]: the frames `spec.melody_frames` gives for the crop.
    mulan_text: M_T [mulan_levels] of the clip's caption, or empty (no caption).
    text_rate: probability of conditioning on M_T instead of M_A when there is one.
    melody_kind: what `melody` holds, 'melody' (the paper's tokens) or 'pitch'.
  Returns:
    (ids [length] int32 via `stage_sequence`, the crop's start in 50 Hz frames).
  """
  if len(acoustic) != spec.ACOUSTIC_PER_SEMANTIC * len(semantic):
    raise UserError(f"a cached clip has {len(acoustic)} acoustic frames for {len(semantic)} "
                    f"semantic frames, not {spec.ACOUSTIC_PER_SEMANTIC} per semantic frame: "
                    "re-tokenize the cache")
  if stage == "fine":
    start = _crop_start(rng, len(acoustic), frames["fine"])
    window = acoustic[start:start + frames["fine"]]
    codes = {"coarse": window[:, :_COARSE_LEVELS], "fine": window[:, _COARSE_LEVELS:]}
  else:
    semantic_start = _crop_start(rng, len(semantic), frames["semantic"])
    # Drawn only when M_T can be picked, so text_rate=0 gives the paper's crops bit for bit.
    if text_rate and mulan_text is not None and len(mulan_text) and rng.random() < text_rate:
      mulan = mulan_text
    codes = {"mulan": mulan[None, :],
             "semantic": semantic[semantic_start:semantic_start + frames["semantic"], None]}
    start = semantic_start * spec.ACOUSTIC_PER_SEMANTIC
    if stage == "coarse":
      codes["coarse"] = acoustic[start:start + frames["coarse"], :_COARSE_LEVELS]
    if melody is not None:
      first, last = spec.melody_frames(semantic_start, semantic_start + len(codes["semantic"]),
                                       len(melody), melody_kind)
      codes[melody_kind] = melody[first:last]
      return stage_sequence(_layout(stage, melody_kind), codes), start
  return stage_sequence(LAYOUTS[stage], codes), start


@seqio.map_over_dataset(num_seeds=1)
def random_crop(ex: Mapping[str, tf.Tensor], seed, stage: str, frames: Mapping[str, int],
                melody: bool | str | None = False, text_rate: float = 0.0):
  """A parsed clip -> {'targets': ids of one crop by `crop_ids`} plus the trace features."""
  kind = spec.melody_kind(melody)

  def crop(seed, mulan, mulan_text, semantic, acoustic, melody_codes, labels_json):
    ids, start = crop_ids(stage, frames, mulan, semantic, acoustic,
                          np.random.default_rng(seed.view(np.uint32)),
                          clip_melody(kind, melody_codes, labels_json, len(semantic)),
                          mulan_text, text_rate, kind or "melody")
    return ids, np.int32(start)

  targets, start = tf.numpy_function(
      crop, [seed, ex["mulan"], ex["mulan_text"], ex["semantic"], ex["acoustic"], ex["melody"],
             ex["labels_json"]],
      [tf.int32, tf.int32], stateful=False)
  targets.set_shape([None])
  start.set_shape([])
  return {"clip_id": ex["clip_id"], "crop_start_frame": start, "targets": targets}


@dataclasses.dataclass
class CacheExamples:
  """Random access to the examples of a cache task, without tf.data.

  Example i of a split is one crop of the split's record i, drawn by
  `crop_ids` from the generator it is given: what `pipeline` reads to compute
  a batch directly from its number, so a resumed run does not replay the
  batches before it.
  """
  stage: str
  cache_dir: str
  frames: Mapping[str, int]
  melody: bool | str | None = False
  text_rate: float = 0.0
  _readers: dict[str, token_cache.SplitReader] = dataclasses.field(
      default_factory=dict, init=False, repr=False, compare=False)

  def _reader(self, split: str) -> token_cache.SplitReader:
    if split not in self._readers:
      reader = token_cache.SplitReader(self.cache_dir, split)
      if not len(reader):
        raise UserError(f"{self.cache_dir} holds no {split!r} clips: tokenize that split or "
                        "pick another")
      self._readers[split] = reader
    return self._readers[split]

  def num_examples(self, split: str) -> int:
    return len(self._reader(split))

  def example(self, split: str, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{'targets': ids [length] int32, 'clip_id', 'crop_start_frame'}."""
    record = self._reader(split)[index]
    kind = spec.melody_kind(self.melody)
    ids, start = crop_ids(self.stage, self.frames, record.mulan, record.semantic, record.acoustic,
                          rng, clip_melody(kind, record.melody, record.labels,
                                           len(record.semantic)),
                          record.mulan_text, self.text_rate, kind or "melody")
    return {"targets": ids, "clip_id": record.clip_id, "crop_start_frame": start}


def random_access(task_name: str) -> CacheExamples | None:
  """The random-access view of a task registered here, or None for any other SeqIO task."""
  return _RANDOM_ACCESS.get(task_name)


def _check_cache(cache_dir: str, stage: str, melody: bool | str | None = False
                 ) -> tuple[token_cache.CacheMetadata, dict[str, int]]:
  """The cache's metadata and records per finished split; UserError if the stage cannot use it."""
  metadata = token_cache.load_metadata(cache_dir)
  if spec.melody_kind(melody) == "melody":  # 'pitch' reads labels, checked per clip
    _check_melody(cache_dir, metadata)
  for cache_key, kind in (("mulan", token_layout.MULAN), ("semantic", token_layout.SEMANTIC),
                          ("acoustic", token_layout.COARSE)):
    if metadata.codebook_size(cache_key) > kind.codebook_size:
      raise UserError(f"{cache_dir}: {cache_key} codebook of {metadata.codebook_size(cache_key)} "
                      f"codes does not fit the stage layouts ({kind.codebook_size})")
  levels = token_layout.COARSE.num_levels + token_layout.FINE.num_levels
  if metadata.acoustic_levels != levels or metadata.mulan_levels != token_layout.MULAN.num_levels:
    raise UserError(f"{cache_dir}: {metadata.acoustic_levels} acoustic and {metadata.mulan_levels} "
                    f"MuLan levels, the stages need {levels} and {token_layout.MULAN.num_levels}")
  records = {split: counts["num_records"] for split, counts in metadata.splits.items()
             if counts["num_records"]}
  if not records:
    raise UserError(f"{cache_dir} holds no clips: musiclm-tokenize skipped every one (the "
                    "shards' .json files count why)")
  return metadata, records


def _check_melody(cache_dir: str, metadata: token_cache.CacheMetadata) -> None:
  if not metadata.has_melody:
    raise UserError(f"{cache_dir} has no melody tokens: re-tokenize with MELODY_EXPORT_DIR and "
                    "MELODY_RVQ_PATH set, or unset MELODY")
  found = metadata.config["melody"]
  kind = token_layout.MELODY
  if (found["num_levels"], found["hop_seconds"]) != (kind.num_levels, spec.MELODY_HOP_SECONDS) or (
      found["codebook_size"] > kind.codebook_size):
    raise UserError(f"{cache_dir}: melody tokens of {found['num_levels']} x "
                    f"{found['codebook_size']} every {found['hop_seconds']} s; the semantic stage "
                    f"reads {kind.num_levels} x {kind.codebook_size} every "
                    f"{spec.MELODY_HOP_SECONDS} s: refit the melody RVQ and re-tokenize")


def _add_task(name: str, stage: str, cache_dir: str, frames: Mapping[str, int],
              melody: bool | str | None = False, text_rate: float = 0.0) -> int:
  """Registers one cache's task; returns its number of train records (0 if none)."""
  metadata, records = _check_cache(cache_dir, stage, melody)
  layout = _layout(stage, melody)
  seqio.TaskRegistry.add(
      name,
      source=seqio.TFExampleDataSource(
          {split: token_cache.shard_pattern(cache_dir, split) for split in records},
          token_cache.FEATURE_SPEC, num_input_examples=records),
      preprocessors=[
          seqio.map_over_dataset(functools.partial(
              _parse, acoustic_levels=metadata.acoustic_levels)),
          functools.partial(random_crop, stage=stage, frames=dict(frames), melody=melody,
                            text_rate=text_rate),
      ],
      output_features={"targets": seqio.Feature(seqio.PassThroughVocabulary(layout.vocab_size),
                                                add_eos=False)})
  _RANDOM_ACCESS[name] = CacheExamples(stage, cache_dir, dict(frames), melody, text_rate)
  return records.get("train", 0)


def _remove(name: str) -> None:
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  for task in [t for t in seqio.TaskRegistry.names() if t == name or t.startswith(f"{name}.")]:
    seqio.TaskRegistry.remove(task)
    _RANDOM_ACCESS.pop(task, None)


def register_cache_task(stage: str, cache_dirs: str | Sequence[str] | None,
                        crop_seconds: float | None = None, name: str | None = None,
                        rates: Sequence[float] | None = None, melody: bool | str | None = False,
                        text_rate: float = 0.0) -> str:
  """Registers `stage`'s task over one cache, or a mixture over several; returns its name.

  Args:
    stage: 'semantic', 'coarse' or 'fine'.
    cache_dirs: token cache folder(s) written by musiclm-tokenize.
    crop_seconds: crop length (default: the paper's, spec.PAPER_CROP_SECONDS).
    name: task or mixture name (default 'token_cache_<stage>'). Registering
      the same name again with other arguments replaces it.
    rates: mixing rates of the caches (default: their numbers of train records).
    melody: the stage is conditioned on [M_A | melody] of this kind (`spec.melody_kind`):
      True or 'melody', the paper's melody tokens (semantic stage; every cache must hold
      them); 'pitch', the tune's pitch classes from each clip's melody labels.
    text_rate: probability that an example of a captioned clip is conditioned
      on its M_T instead of its M_A (0: the paper; caches written before M_T
      existed have none). Not for the fine stage, which has no conditioning.
  """
  _check_stage(stage, melody)
  cache_dirs = [cache_dirs] if isinstance(cache_dirs, str) else list(cache_dirs or [])
  if not cache_dirs:
    raise UserError("no token cache given: pass --gin.TOKEN_CACHE_DIR=\\\"DIR\\\" (a folder "
                    "written by musiclm-tokenize, or a list of them)")
  if not 0.0 <= text_rate <= 1.0 or (text_rate and stage == "fine"):
    raise UserError(f"text_rate {text_rate} for the {stage} stage: use a probability in [0, 1], "
                    "and 0 for the fine stage (it has no MuLan conditioning)")
  if rates is not None and len(rates) != len(cache_dirs):
    raise UserError(f"{len(rates)} mixing rates for {len(cache_dirs)} caches: give one per cache")
  name = name or f"token_cache_{stage}"
  key = (stage, tuple(cache_dirs), crop_seconds, None if rates is None else tuple(rates), melody,
         text_rate)
  if _REGISTERED.get(name) == key:
    return name
  if name in _REGISTERED:
    _remove(name)
  elif name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names():
    raise UserError(f"SeqIO task or mixture {name!r} already exists: pick another name")
  frames = crop_frames(stage, crop_seconds)
  if len(cache_dirs) == 1:
    _add_task(name, stage, cache_dirs[0], frames, melody, text_rate)
  else:
    tasks = [f"{name}.{i}" for i in range(len(cache_dirs))]
    sizes = [_add_task(task, stage, cache_dir, frames, melody, text_rate)
             for task, cache_dir in zip(tasks, cache_dirs)]
    seqio.MixtureRegistry.add(name, list(zip(tasks, rates or sizes)))
  _REGISTERED[name] = key
  return name
