"""The synth_music corpus is seeded, split by source piece, rendered, and labelled."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from musiclm_jax.data.synth_music import builder
from musiclm_jax.data.synth_music import corpus
from musiclm_jax.data.synth_music import render
from tests.conftest import SYNTH_MICRO_SPEC
from tests.test_synth_music_captions import assert_caption_agrees


def test_plan_is_seeded_and_splits_share_no_source_piece():
  spec = builder.LARGE.spec
  plans = corpus.plan_pieces(spec)
  assert plans == corpus.plan_pieces(spec)
  assert plans != corpus.plan_pieces(dataclasses.replace(spec, seed=1))
  assert sum(p.num_clips for p in plans) == spec.num_clips
  sources = {split: {p.source_id for p in plans if p.split == split}
             for split in corpus.SPLITS}
  assert len({p.source_id for p in plans}) == len(plans)
  assert not sources["train"] & sources["validation"]
  assert not sources["train"] & sources["test"]
  assert not sources["validation"] & sources["test"]
  assert len(sources["validation"]) == len(sources["test"]) == round(0.1 * len(plans))
  kinds = [p.kind for p in plans]
  assert round(0.3 * len(plans)) == len(plans) - kinds.count(corpus.TEMPLATE)
  assert 0.2 < np.mean([p.has_melody_pair for p in plans]) < 0.3


def test_tiny_config_is_about_200_ten_second_clips():
  spec = builder.TINY.spec
  assert (spec.num_clips, spec.clip_seconds) == (200, 10.0)
  assert spec.total_seconds / 3600 < builder.LARGE.spec.total_seconds / 3600 / 10


def test_small_config_is_four_tinies_split_alike():
  tiny, small = builder.TINY.spec, builder.SMALL.spec
  assert small == dataclasses.replace(tiny, num_clips=4 * tiny.num_clips)
  assert "small" in [config.name for config in builder.SynthMusic.BUILDER_CONFIGS]
  clips = {split: sum(p.num_clips for p in corpus.plan_pieces(small) if p.split == split)
           for split in corpus.SPLITS}
  assert clips == {"train": 640, "validation": 80, "test": 80}


def test_extra_training_clips_keep_the_smaller_corpus_and_its_held_out_pieces():
  small, bigger = builder.SMALL.spec, builder.SMALL_X4.spec
  assert bigger == dataclasses.replace(small, extra_train_clips=3 * small.num_clips)
  plans, base = corpus.plan_pieces(bigger), corpus.plan_pieces(small)
  assert plans[:len(base)] == base
  extra = plans[len(base):]
  assert {p.split for p in extra} == {"train"}
  assert sum(p.num_clips for p in extra) == bigger.extra_train_clips
  assert bigger.total_seconds == 4 * small.total_seconds
  # New pieces: no score of the smaller corpus again, every source its own.
  assert len({p.source_id for p in plans}) == len(plans)
  assert round(0.3 * len(extra)) == sum(p.kind != corpus.TEMPLATE for p in extra)
  # The new templates go round every genre in turn, as the smaller corpus's do.
  genres = [p.what for p in extra if p.kind == corpus.TEMPLATE]
  assert len(set(genres[:10])) == 10 == len(set(genres))


def test_extra_training_pieces_reuse_only_training_scores_once_the_corpus_runs_out():
  # Every piece a score and one clip each: 1,000 extra pieces want 500 chorales, of 408.
  spec = corpus.CorpusSpec(num_clips=100, clips_per_piece=1, score_fraction=1.0,
                           extra_train_clips=1000)
  with pytest.raises(ValueError, match="only 408 .* reuse_training_scores") as error:
    corpus.plan_pieces(spec)
  assert "\n" not in str(error.value)
  plans = corpus.plan_pieces(dataclasses.replace(spec, reuse_training_scores=True))
  assert plans[:100] == corpus.plan_pieces(dataclasses.replace(spec, extra_train_clips=0))
  held_out = {p.what for p in plans if p.split != "train"}
  first_train = {p.what for p in plans if p.split == "train" and not p.rendering}
  again = [p for p in plans if p.rendering]
  assert again and all(p.index >= 100 and p.split == "train" for p in again)
  assert {p.what for p in again} <= first_train and not {p.what for p in again} & held_out
  # Clip keys stay unique; a score's renderings keep its source id (one composition).
  assert len({p.piece_id for p in plans}) == len(plans)
  assert all(p.source_id == f"music21/{p.what}" for p in again)
  assert len({p.source_id for p in plans}) == len(plans) - len(again)
  # A reused score is rendered on its own draws (tempo, transposition, instruments).
  first = next(p for p in plans if p.what == again[0].what and not p.rendering)
  pieces = [corpus.make_piece(p, spec) for p in (first, again[0])]
  drawn = [(p.tempo_bpm, p.key_tonic, [part.program for part in p.parts]) for p in pieces]
  assert pieces[0].title == pieces[1].title and drawn[0] != drawn[1]


def test_melody_pair_has_the_same_notes_and_other_instruments():
  for plan in corpus.plan_pieces(SYNTH_MICRO_SPEC):
    piece = corpus.make_piece(plan, SYNTH_MICRO_SPEC)
    pair = corpus.melody_pair_of(piece, plan, SYNTH_MICRO_SPEC)
    assert pair.melody_part.notes == piece.melody_part.notes
    for part, pair_part in zip(piece.parts, pair.parts):
      assert part.notes == pair_part.notes
      assert part.is_drum or part.program != pair_part.program


def test_rendering_is_deterministic_and_normalised():
  plan = corpus.plan_pieces(SYNTH_MICRO_SPEC)[0]
  piece = corpus.make_piece(plan, SYNTH_MICRO_SPEC)
  soundfont = render.find_soundfont()
  first = render.render(piece, 24_000, soundfont)
  np.testing.assert_array_equal(first, render.render(piece, 24_000, soundfont))
  assert first.shape == (int(piece.duration_s * 24_000),)
  rms, peak = np.sqrt(np.mean(first ** 2)), np.abs(first).max()
  assert rms <= 0.1 + 1e-4 and peak <= 0.9 + 1e-4
  assert np.isclose(rms, 0.1, atol=1e-4) or np.isclose(peak, 0.9, atol=1e-4)


def test_micro_corpus_builds_with_consistent_examples(synth_music_micro):
  info = synth_music_micro.info
  assert info.name == "synth_music"
  assert {s: info.splits[s].num_examples for s in corpus.SPLITS} == {
      "train": 6, "validation": 1, "test": 1}
  assert info.metadata["soundfont"].endswith(".sf2")
  sources = {}
  for split in corpus.SPLITS:
    for ex in tfds.as_numpy(synth_music_micro.as_dataset(split=split)):
      sources.setdefault(split, set()).add(ex["source_id"])
      audio = ex["audio"]
      assert audio.shape == (48_000,) and audio.dtype == np.float32
      assert 0.01 < np.sqrt(np.mean(audio ** 2)) < 0.2
      instruments = [i.decode() for i in ex["instruments"]]
      assert_caption_agrees(
          ex["caption"].decode(), [a.decode() for a in ex["aspect_list"]],
          ex["genre"].decode(), instruments, float(ex["tempo_bpm"]), ex["key"].decode(),
          ex["mode"].decode(), [m.decode() for m in ex["mood"]])
      assert set(instruments) == {i.decode() for i in ex["parts"]["instrument"]}
      melody = ex["melody"]
      assert len(melody["pitch"]) > 0
      assert np.all(melody["start_s"] < melody["end_s"]) and np.all(melody["end_s"] <= 2.0)
      if ex["has_melody_pair"]:
        pair_audio = ex["melody_pair"]["audio"]
        assert pair_audio.shape == audio.shape and not np.allclose(pair_audio, audio)
        assert ex["melody_pair"]["instruments"][0] != ex["instruments"][0]
  assert not sources["train"] & (sources["validation"] | sources["test"])
  all_sources = set().union(*sources.values())
  assert any(s.startswith(b"music21/bach") for s in all_sources)
  assert any(s.startswith(b"music21/ryansMammoth") for s in all_sources)


def test_build_is_reused_not_rebuilt(synth_music_micro):
  data_dir_root = os.path.dirname(os.path.dirname(os.path.dirname(synth_music_micro.data_dir)))
  again = builder.build_synth_music(data_dir_root, synth_music_micro.builder_config)
  assert again.data_dir == synth_music_micro.data_dir
