"""TFDS builder of the synth_music corpus, and a one-call build for Python users.

`SynthMusic` is not registered under its own name here: the thin builder in
`data/synth_music/` subclasses it, which is what `tfds build data/synth_music`
finds and registers as "synth_music". Python code (the demo, tests) calls
`build_synth_music(data_dir)` and never needs the data/ folder on its path.

  builder = build_synth_music("/tmp/tfds")          # builds tiny once, then loads
  train = builder.as_dataset(split="train")
"""
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from musiclm_jax.audio import validation
from musiclm_jax.data.synth_music import corpus
from musiclm_jax.data.synth_music import render

_DESCRIPTION = """
Captioned music rendered offline with FluidSynth and a General MIDI soundfont:
pieces composed from seeded genre templates (rock, pop, jazz, blues, classical,
electronic, folk, ambient, hip-hop, latin) and real scores from music21's
corpus (Bach chorales, fiddle tunes), with MusicCaps-style captions and aspect
lists written from what each clip really contains, the structured labels
(genre, instruments, tempo, key, mood, melody notes) and, for some clips, the
same melody rendered with other instruments (`melody_pair`). Splits share no
source piece. The soundfont used is in `info.metadata["soundfont"]`.
"""


@dataclasses.dataclass
class SynthMusicConfig(tfds.core.BuilderConfig):
  """A named corpus size; see corpus.CorpusSpec."""
  spec: corpus.CorpusSpec | None = None


TINY = SynthMusicConfig(
    name="tiny", spec=corpus.CorpusSpec(num_clips=200, clips_per_piece=2),
    description="200 x 10 s clips (33 min) from 100 pieces; builds in ~1-2 min on 2 cores.")
# Between tiny and large with tiny's splits and pieces: does 4x the data make a stage
# generalise rather than memorise? (docs/design.md §10).
SMALL = SynthMusicConfig(
    name="small", spec=corpus.CorpusSpec(num_clips=800, clips_per_piece=2),
    description="800 x 10 s clips (2.2 h) from 400 pieces; builds in ~6 min on 2 cores (4x tiny).")
# small's clips, splits and held-out pieces, and 3x as many training clips again: a
# stage trained on it is judged on the same held-out captions as one trained on small.
SMALL_X4 = SynthMusicConfig(
    name="small_x4", spec=corpus.CorpusSpec(num_clips=800, clips_per_piece=2,
                                            extra_train_clips=2400),
    description="small's 800 x 10 s clips and splits, and 2,400 more training clips from 1,200 "
                "more pieces (8.9 h); builds in ~11 min on 2 cores.")
# 16x small's training clips, the same held-out clips: the chorales run out after ~4,000
# extra clips, so the extra pieces render training pieces' scores again.
SMALL_X16 = SynthMusicConfig(
    name="small_x16", spec=corpus.CorpusSpec(num_clips=800, clips_per_piece=2,
                                             extra_train_clips=9600, reuse_training_scores=True),
    description="small's 800 x 10 s clips and splits, and 9,600 more training clips from 4,800 "
                "more pieces (29 h); ~35 min to build on 2 cores at small_x4's rate (not yet "
                "timed).")
QUICK = SynthMusicConfig(
    name="quick", spec=corpus.CorpusSpec(num_clips=24, clip_seconds=2.0, clips_per_piece=1,
                                              split_fractions=(0.2, 0.1)),
    description="24 x 2 s clips from 24 pieces, for `demo --quick` and wiring checks (~30 s).")
LARGE = SynthMusicConfig(
    name="large", spec=corpus.CorpusSpec(num_clips=3000, clips_per_piece=4),
    description="3,000 x 10 s clips (8.3 h) from 750 pieces.")


def _parts_features() -> tfds.features.Sequence:
  return tfds.features.Sequence({
      "role": tfds.features.Text(), "instrument": tfds.features.Text(),
      "program": np.int32, "pattern": tfds.features.Text()})


class SynthMusic(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The synth_music corpus. Configs: tiny, small, small_x4, small_x16, quick, large."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [TINY, SMALL, SMALL_X4, SMALL_X16, QUICK, LARGE]
  DEFAULT_CONFIG_NAME = "tiny"

  def _info(self) -> tfds.core.DatasetInfo:
    rate_hz = self.builder_config.spec.sample_rate_hz
    audio = tfds.features.Audio(shape=(None,), dtype=np.float32, sample_rate=rate_hz,
                                doc="Mono float32 in [-1, 1].")
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "audio": audio,
            "caption": tfds.features.Text(),
            "aspect_list": tfds.features.Sequence(tfds.features.Text()),
            "source_id": tfds.features.Text(doc="The composition; splits never share one."),
            "source": tfds.features.Text(doc="'template' or 'music21'."),
            "title": tfds.features.Text(),
            "genre": tfds.features.Text(),
            "style": tfds.features.Text(),
            "ensemble": tfds.features.Text(),
            "instruments": tfds.features.Sequence(tfds.features.Text()),
            "parts": _parts_features(),
            "tempo_bpm": np.float32,
            "key": tfds.features.Text(doc="e.g. 'F# minor'."),
            "mode": tfds.features.Text(),
            "mood": tfds.features.Sequence(tfds.features.Text()),
            "has_drums": np.bool_,
            "melody": tfds.features.Sequence({
                "pitch": np.int32, "start_s": np.float32, "end_s": np.float32}),
            "clip_index": np.int32,
            "start_s": np.float32,
            "has_melody_pair": np.bool_,
            "melody_pair": {
                "audio": audio,
                "caption": tfds.features.Text(),
                "instruments": tfds.features.Sequence(tfds.features.Text()),
                "parts": _parts_features(),
            },
        }),
        supervised_keys=("audio", "caption"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # everything is rendered locally
    soundfont = render.find_soundfont()
    render.find_fluidsynth()
    self.info.metadata["soundfont"] = os.path.basename(soundfont)
    self.info.metadata["skipped"] = {}
    return {split: self._generate_examples(split, soundfont) for split in corpus.SPLITS}

  def _generate_examples(self, split: str, soundfont: str):
    skipped = validation.SkippedAudio("skip")
    yield from corpus.generate_examples(self.builder_config.spec, split, soundfont, skipped)
    self.info.metadata["skipped"][split] = dict(skipped.counts)
    log = logging.warning if skipped.total else logging.info
    log("synth_music/%s %s: %s", self.builder_config.name, split, skipped.summary())


def build_synth_music(data_dir: str | os.PathLike,
                      config: str | SynthMusicConfig = "tiny") -> tfds.core.DatasetBuilder:
  """Builds `config` into `data_dir` unless it is already there; returns the builder."""
  builder = SynthMusic(config=config, data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
