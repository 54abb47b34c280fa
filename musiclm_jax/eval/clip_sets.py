"""The clip sets musiclm-eval scores (eval/suite.py), read from disk and built.

  reference = read_reference("synth_music/tiny", "runs/demo/tfds", "validation")
  generated = paired_set("generated", *read_infer_folder("runs/demo/samples"), reference)
  (audio, rate, texts), (stitched, _, stitchings), stories = read_infer_lines("runs/demo/samples")

Clip sets, all scored by the same code against the same reference split:
  generated       the plain text lines of a musiclm-infer folder (story and
                  continuation lines have no single prompt and are left out),
                  each clip cut to the reference split's clip length
  shuffled        the same clips, each scored against another prompt (a
                  derangement of the distinct prompts), i.e. music generated for
                  a shuffled prompt; or the clips of SHUFFLED_DIR, deranged alike
  unconditional   a musiclm-infer folder generated with NULL conditioning
                  (GUIDANCE_SCALE=0.0 keeps only the NULL-conditioned logits)
  real            the reference split's clips, scored against their own captions
  codec           SoundStream reconstructions of the real clips
  noise           coloured noise: the real clips' average spectrum and loudness,
                  scored against the real clips' captions (not music at all)

A generated clip is paired with the reference clip whose caption is its
prompt text (prompt records carry no clip id); the paired metrics (KLD, tempo,
key) average over a set's paired clips, use the reference clip's tags and
labels, and are unavailable (with the reason) when no prompt is a caption.
The window-join measure (eval/joins.py) reads the text and story lines at their
full length with the windows they were generated in, and story adherence
(eval/story.py) the story lines with their segments: `read_infer_lines` gives
both and the text lines, reading each WAV once.
"""
import dataclasses
import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from musiclm_jax import results_file
from musiclm_jax.audio import io as audio_io
from musiclm_jax.data import caption_batches
from musiclm_jax.data import tfds_audio
from musiclm_jax.data.synth_music import labels as synth_labels
from musiclm_jax.errors import UserError
from musiclm_jax.eval import coloured_noise
from musiclm_jax.eval import fad
from musiclm_jax.eval import joins
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import prompt_adherence

SETS = ("generated", "shuffled", "unconditional", "real", "codec", "noise")
SET_TITLES = {"generated": "generated", "shuffled": "shuffled prompts",
              "unconditional": "unconditional", "real": "real (held-out)",
              "codec": "codec reconstruction", "noise": "coloured noise"}


@dataclasses.dataclass
class ClipSet:
  """Clips to score: audio[i] [time] at sample_rate_hz, described by texts[i];
  reference_index[i] is the reference clip with that caption, or -1."""
  name: str
  audio: list[np.ndarray]
  sample_rate_hz: int
  texts: list[str]
  reference_index: np.ndarray

  @property
  def paired(self) -> np.ndarray:
    """[clips] bool: the clip's prompt is a reference caption."""
    return self.reference_index >= 0

  @property
  def paired_reference_index(self) -> np.ndarray:
    """[paired clips] the reference clip of each paired clip, in clip order."""
    return self.reference_index[self.paired]


@dataclasses.dataclass
class Reference:
  """A reference split in memory: audio [time] at sample_rate_hz, texts, and labels if it has
  them (mood: one class per mood word group, see `mood_class`)."""
  audio: list[np.ndarray]
  sample_rate_hz: int
  texts: list[str]
  tempo_bpm: list[float] | None
  keys: list[str] | None
  genre: list[str] | None = None
  instruments: list[tuple[str, ...]] | None = None
  mood: list[str] | None = None

  @property
  def has_judge_labels(self) -> bool:
    return all(getattr(self, label) is not None for label in label_judge.HEADS)


class Story(NamedTuple):
  """One story line's clip: audio [time] and its segments' (text, seconds), in order."""
  audio: np.ndarray
  segments: tuple[tuple[str, float], ...]


def mood_class(words: Sequence[str]) -> str:
  """A clip's mood words -> its class: synth_music's group of words (one per tempo class and
  mode) that holds them all, as captions name two of a group's three; else the words joined."""
  for group in synth_labels.MOOD_WORDS.values():
    if set(words) <= set(group):
      return ", ".join(group)
  return ", ".join(words)


def _read_clips(samples_dir: str, name: str, keep: Callable[[dict], bool]
                ) -> tuple[list[tuple[dict, np.ndarray]], int | None]:
  """((record, mono audio [time]) of every sample of the kept records, their sample rate (None:
  no clip)); a one-line error for a missing or altered file or a folder of mixed rates."""
  clips, rates = [], set()
  for record in results_file.read(samples_dir, name):
    if "error" in record or not keep(record):
      continue
    for sample in record["samples"]:
      wav = os.path.join(samples_dir, sample["wav"])
      if not os.path.isfile(wav):
        raise UserError(f"{wav} (line {record['line']} of {os.path.join(samples_dir, results_file.NAME)}) "
                        f"is missing: re-run musiclm-infer")
      samples, rate = audio_io.read_audio(wav)
      if rate != record["sample_rate_hz"]:
        raise UserError(f"{wav} is at {rate} Hz but its record says {record['sample_rate_hz']} Hz: "
                        f"the folder was altered, re-run musiclm-infer into a fresh folder")
      rates.add(rate)
      clips.append((record, audio_io.to_mono(samples)))
  if len(rates) > 1:
    raise UserError(f"{samples_dir} mixes sample rates {sorted(rates)}: evaluate one musiclm-infer "
                    f"run per folder")
  return clips, rates.pop() if rates else None


def _text_clips(clips: list[tuple[dict, np.ndarray]], rate: int | None,
                samples_dir: str) -> tuple[list[np.ndarray], int, list[str]]:
  """(audio, rate, prompt per clip) of the plain text lines among `_read_clips`' clips; a
  one-line error when they are too few for FAD or the shuffled-prompt baseline."""
  clips = [(record, audio) for record, audio in clips if results_file.is_text_line(record)]
  texts = [record["text"] for record, _ in clips]
  if len(clips) < fad.MIN_CLIPS or len(set(texts)) < 2:
    raise UserError(f"{samples_dir} has {len(clips)} clip(s) of {len(set(texts))} text prompt(s): "
                    f"FAD needs {fad.MIN_CLIPS} clips and the shuffled-prompt baseline 2 "
                    f"different prompts; generate more")
  return [audio for _, audio in clips], rate, texts


def read_infer_folder(samples_dir: str, name: str = "generated") -> tuple[list[np.ndarray], int, list[str]]:
  """(audio [time] per clip, sample rate, prompt per clip) of the plain text lines of a musiclm-infer folder."""
  return _text_clips(*_read_clips(samples_dir, name, results_file.is_text_line), samples_dir)


def read_infer_lines(samples_dir: str) -> tuple[tuple[list[np.ndarray], int, list[str]],
                                                tuple[list[np.ndarray], int | None, list[joins.Stitching]],
                                                list[Story]]:
  """One read of the text and story lines of a musiclm-infer folder (each WAV decoded once):
  (`read_infer_folder`'s (audio, rate, prompts) of its plain text lines, (audio [time] per
  clip, sample rate (None: no clip), how each was stitched from windows) of its text and
  story lines, every sample of its story lines with its segments, at that same rate). A
  continuation's first windows continue its prompt audio (a story's, not its first segment's
  music), and its lines are left out of all three."""
  clips, rate = _read_clips(samples_dir, "generated", lambda record: not record.get("continue_from"))
  stitchings = [joins.Stitching(record["windows"], tuple(s for _, s in record["story"])
                                if "story" in record else (record["seconds"],))
                for record, _ in clips]
  stories = [Story(audio, tuple((text, float(seconds)) for text, seconds in record["story"]))
             for record, audio in clips if "story" in record]
  return (_text_clips(clips, rate, samples_dir), ([audio for _, audio in clips], rate, stitchings),
          stories)


def read_melody_pairs(samples_dir: str) -> tuple[list[np.ndarray], list[np.ndarray], int | None]:
  """(generated audio [time], its melody input [time], sample rate) of every sample of the
  musiclm-infer records that have a melody_from input (None rate: no such record)."""
  generated, melodies, rate = [], [], None
  for record in results_file.read(samples_dir, "generated"):
    if "melody" not in record or "error" in record:
      continue
    melody, melody_rate = audio_io.read_audio(os.path.join(samples_dir, record["melody"]["wav"]))
    for sample in record["samples"]:
      audio, rate = audio_io.read_audio(os.path.join(samples_dir, sample["wav"]))
      if melody_rate != rate:
        raise UserError(f"{record['melody']['wav']} is at {melody_rate} Hz, its music at {rate} "
                        f"Hz: the folder was altered, re-run musiclm-infer into a fresh folder")
      generated.append(audio_io.to_mono(audio))
      melodies.append(audio_io.to_mono(melody))
  return generated, melodies, rate


def read_reference(dataset: str, data_dir: str | None, split: str,
                   max_clips: int | None = None) -> Reference:
  """The clips of a TFDS split with their captions (or aspects), tempo and key labels if present."""
  builder, feature = tfds_audio.open_audio_dataset(dataset, data_dir)
  if feature.sample_rate is None:
    raise UserError(f"{dataset}'s audio feature declares no sample rate: rebuild it with "
                    f"tfds.features.Audio(sample_rate=...)")
  if split not in builder.info.splits:
    raise UserError(f"{dataset} has no split {split!r}: use one of {sorted(builder.info.splits)}")
  features = builder.info.features
  has_labels = {key: key in features for key in ("tempo_bpm", "key") + label_judge.HEADS}
  audio, texts, tempo, keys = [], [], [], []
  labels = {label: [] for label in label_judge.HEADS}
  examples = builder.as_dataset(split=split, shuffle_files=False)
  for example in examples.take(max_clips or -1).as_numpy_iterator():
    caption = example["caption"].decode() if "caption" in features else ""
    aspects = tuple(a.decode() for a in example["aspect_list"]) if "aspect_list" in features else ()
    audio.append(np.asarray(example["audio"], np.float32).reshape(-1))
    texts.append(caption_batches.eval_text(
        caption_batches.CaptionedClips((), (caption,), (aspects,)), 0))
    if has_labels["tempo_bpm"]:
      tempo.append(float(example["tempo_bpm"]))
    if has_labels["key"]:
      keys.append(example["key"].decode())
    for label in (label for label in label_judge.HEADS if has_labels[label]):
      value = example[label]
      words = tuple(w.decode() for w in value) if isinstance(value, np.ndarray) else (value.decode(),)
      labels[label].append({"instruments": words, "mood": mood_class(words)}.get(label, words[0]))
  if len(audio) < 2 * fad.MIN_CLIPS:
    raise UserError(f"{dataset} {split} has {len(audio)} clip(s): the real-vs-real FAD floor "
                    f"needs {2 * fad.MIN_CLIPS} (two halves with a covariance each); use a larger split")
  return Reference(audio, feature.sample_rate, texts, tempo if has_labels["tempo_bpm"] else None,
                   keys if has_labels["key"] else None,
                   **{label: values if has_labels[label] else None for label, values in labels.items()})


def read_judge_split(dataset: str, data_dir: str | None, split: str) -> Reference:
  """The clips of a split the label judge trains on; a one-line error if it has no labels for it."""
  reference = read_reference(dataset, data_dir, split)
  if not reference.has_judge_labels:
    raise UserError(f"{dataset} {split} has no {'/'.join(label_judge.HEADS)} labels to train the "
                    f"label judge on: set JUDGE_SPLIT=None, or use a labelled corpus (synth_music)")
  return reference


def paired_set(name: str, audio: list[np.ndarray], sample_rate_hz: int, texts: list[str],
               reference: Reference) -> ClipSet:
  """Clips with their prompt texts, each paired with the reference clip of that caption (-1: none)."""
  by_text = {text: i for i, text in enumerate(reference.texts)}
  return ClipSet(name, audio, sample_rate_hz, list(texts),
                 np.asarray([by_text.get(text, -1) for text in texts], np.int64))


def cropped(clips: ClipSet, seconds: float) -> ClipSet:
  """The set with every clip cut to its first `seconds`."""
  samples = round(seconds * clips.sample_rate_hz)
  return dataclasses.replace(clips, audio=[a[:samples] for a in clips.audio])


def shuffled_prompts(texts: Sequence[str], seed: int = 0) -> list[str]:
  """Each text [clips] replaced by another of them: a derangement of the distinct texts, so
  clips of one prompt all get the same other prompt (2 or more distinct texts)."""
  prompts = sorted(set(texts))
  order = prompt_adherence.derangement(len(prompts), seed)
  other = {prompts[i]: prompts[j] for i, j in enumerate(order)}
  return [other[text] for text in texts]


def shuffled_set(clips: ClipSet, reference: Reference, seed: int = 0) -> ClipSet:
  """The same clips, each given another prompt (`shuffled_prompts`) and its pairing."""
  return paired_set("shuffled", clips.audio, clips.sample_rate_hz,
                    shuffled_prompts(clips.texts, seed), reference)


def real_set(reference: Reference) -> ClipSet:
  return ClipSet("real", reference.audio, reference.sample_rate_hz, reference.texts,
                 np.arange(len(reference.audio)))


def codec_set(reference: Reference, codec: Any) -> ClipSet:
  """Real clips through a `tokenizers.AcousticTokenizer` (encode, then decode), cut to their length."""
  audio = []
  for clip in tqdm(reference.audio, desc="codec reconstruction", unit="clip"):
    clip = audio_io.resample(clip, reference.sample_rate_hz, codec.sample_rate_hz)
    audio.append(codec.decode(codec.encode(clip[None]))[0, :len(clip)])
  return ClipSet("codec", audio, codec.sample_rate_hz, reference.texts,
                 np.arange(len(reference.audio)))


def noise_set(reference: Reference, seed: int = 0) -> ClipSet:
  """Coloured noise for every real clip (its length, loudness and caption), shaped by their average spectrum."""
  return ClipSet("noise", coloured_noise.coloured_noise(reference.audio, seed),
                 reference.sample_rate_hz, reference.texts, np.arange(len(reference.audio)))
