"""Caption augmentation and the captioned audio batch source."""
import os

import numpy as np
import pytest

from musiclm_jax.data import caption_augment
from musiclm_jax.data import caption_batches

CAPTION = ("An instrumental jazz piece in F major at 120 bpm. A piano plays the melody. "
           "A double bass plays a walking bass line. The tempo is medium.")
ASPECTS = ["jazz", "piano", "double bass", "walking bass", "medium tempo"]


def test_every_kind_is_drawn_and_each_is_faithful_to_the_clip():
  rng = np.random.default_rng(0)
  sentences = caption_augment.split_sentences(CAPTION)
  assert len(sentences) == 4
  kinds = set()
  for _ in range(200):
    text = caption_augment.augment_caption(CAPTION, ASPECTS, rng)
    if text == CAPTION:
      kinds.add("caption")
    elif text.endswith("."):
      kept = caption_augment.split_sentences(text)
      assert kept == [s for s in sentences if s in kept]  # a subset, in order
      kinds.add("sentences")
    else:
      tags = text.split(", ")
      assert set(tags) <= set(ASPECTS) and len(set(tags)) == len(tags)
      kinds.add("aspects" if len(tags) == len(ASPECTS) else "aspect_subset")
  assert kinds == set(caption_augment.KINDS)


def test_same_rng_same_text_and_weights_select_kinds():
  draw = lambda seed: [caption_augment.augment_caption(CAPTION, ASPECTS, np.random.default_rng(seed))
                       for _ in range(5)]
  assert draw(3) == draw(3)
  only_aspects = caption_augment.TextAugmentation(caption=0, sentences=0, aspects=1, aspect_subset=0)
  text = caption_augment.augment_caption(CAPTION, ASPECTS, np.random.default_rng(0), only_aspects)
  assert sorted(text.split(", ")) == sorted(ASPECTS)


def test_clips_with_one_kind_of_text_use_it_and_none_is_an_error():
  rng = np.random.default_rng(0)
  assert all(caption_augment.augment_caption(CAPTION, [], rng).endswith(".") for _ in range(20))
  assert all(set(caption_augment.augment_caption("", ASPECTS, rng).split(", ")) <= set(ASPECTS)
             for _ in range(20))
  with pytest.raises(ValueError, match="caption or an aspect list"):
    caption_augment.augment_caption(" ", [], rng)


def test_caption_batches_are_seeded_resumable_and_sharded(synth_music_micro):
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(synth_music_micro.data_dir)))
  source = caption_batches.CaptionBatchSource("synth_music/micro", data_dir=data_dir, batch_size=4,
                                              crop_seconds=0.5, max_text_length=64, seed=1)
  batches = source.get_batches()
  first, second = next(batches), next(batches)
  assert first["audio"].shape == (4, 12000) and first["audio"].dtype == np.float32
  assert first["text_ids"].shape == first["text_mask"].shape == (4, 64)
  assert first["text_ids"].dtype == np.int32 and (first["text_ids"][:, 0] == 101).all()  # [CLS]
  resumed = next(source.get_batches(start_batch=1))
  for key in first:
    np.testing.assert_array_equal(resumed[key], second[key])
    np.testing.assert_array_equal(next(source.get_batches(1, 2))[key], first[key][2:])
  evaluation = caption_batches.CaptionBatchSource("synth_music/micro", data_dir=data_dir, split="train",
                                                  batch_size=2, crop_seconds=0.5, repeat=False)
  clips = caption_batches.load_captioned_clips("synth_music/micro", data_dir, "train",
                                               min_samples=12000)
  eval_batches = list(evaluation.get_batches())
  assert len(eval_batches) == len(clips.audio) // 2
  np.testing.assert_array_equal(eval_batches[0]["audio"][1], clips.audio[1][:12000])
