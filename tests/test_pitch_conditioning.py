"""Stages on [M | the tune's pitch classes]: codes from labels and from audio, crops, the cascade."""
import jax
import numpy as np
import pytest

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import musiclm_spec
from musiclm_jax.data import melody_voices
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.data import tune_pitch
from musiclm_jax.errors import UserError
from musiclm_jax.models import lm
from musiclm_jax.tokenizers import pitch as pitch_tokenizer
import fake_tokenizers
from numpy_params import model_params
from test_cascade import TINY, WINDOWS, tiny_stage_lms
from test_token_cache import random_record

NONE = token_layout.NO_PITCH_CODE
RATE_HZ = musiclm_spec.SAMPLE_RATE_HZ
SEMANTIC = musiclm_spec.semantic_stage("pitch")
COARSE = musiclm_spec.coarse_stage("pitch")
# A tune: C4 0.00-0.30 s, E4 0.30-0.50 s, a rest, G3 0.70-1.00 s overlapped by B4 from 0.90 s.
NOTES = melody_voices.Notes(np.array([60, 64, 55, 71]), np.array([0.0, 0.3, 0.7, 0.9]),
                            np.array([0.3, 0.5, 1.0, 1.1]))


def test_pitch_codes_name_the_note_at_each_80_ms_frame_centre():
  # Frame centres 0.04, 0.12, ... s, counted by hand against NOTES.
  expected = [0, 0, 0, 0, 4, 4, NONE, NONE, NONE, 7, 7, 11, 11, 11, NONE]
  np.testing.assert_array_equal(tune_pitch.from_notes(NOTES, 15)[:, 0], expected)
  labels = {"melody": {"pitch": NOTES.pitch.tolist(), "start_s": NOTES.start_s.tolist(),
                       "end_s": NOTES.end_s.tolist()}}
  np.testing.assert_array_equal(tune_pitch.from_labels(labels, 15)[:, 0], expected)
  with pytest.raises(UserError, match="has no melody labels"):
    tune_pitch.from_labels({"genre": "jazz"}, 15)


def test_a_sung_tune_gives_the_codes_of_its_notes_in_any_octave():
  # A whistle of labelled notes, without the voices' liberties, an octave up or down: pYIN
  # must find each note's class wherever a frame lies inside it (the glides are at the edges).
  notes = melody_voices.Notes(np.array([60, 62, 64, 67, 69, 65]), np.arange(6) * 0.4,
                              np.arange(6) * 0.4 + 0.35)
  reference = tune_pitch.from_notes(notes, 30)[:, 0]
  inside = np.zeros(30, bool)
  centres = (np.arange(30) + 0.5) * musiclm_spec.PITCH_HOP_SECONDS
  for start, end in zip(notes.start_s, notes.end_s):
    inside |= (centres > start + 0.06) & (centres < end - 0.06)
  for octave in (-12, 12):
    shifted = notes._replace(pitch=notes.pitch + octave)
    audio = melody_voices.render(melody_voices.WHISTLE, shifted, 2.4, RATE_HZ,
                                 np.random.default_rng(0), melody_voices.NO_VARIATION)
    codes = pitch_tokenizer.PitchTokenizer().tokenize(audio[None])[0, :, 0]
    assert codes.shape == (30,)
    assert np.mean(codes[inside] == reference[inside]) > 0.9
    assert np.all(codes[centres > 2.4] == NONE)
  silence = tune_pitch.from_audio(np.zeros(RATE_HZ, np.float32), RATE_HZ)
  np.testing.assert_array_equal(silence, np.full((13, 1), NONE))


def test_pitch_frames_are_two_semantic_frames_and_count_in_every_window():
  assert musiclm_spec.SEMANTIC_PER_MELODY_FRAME["pitch"] == 2
  assert musiclm_spec.melody_frames(0, 250, kind="pitch") == (0, 125)
  assert musiclm_spec.melody_frames(125, 375, kind="pitch") == (62, 187)  # the frame of 125
  assert musiclm_spec.melody_frames(125, 375, 150, "pitch") == (25, 150)  # the tune's last ones
  # BOS left out: 12 M + 125 pitch + 250 S; 12 M + 25 pitch + 50 S + 400 coarse.
  assert musiclm_spec.window_tokens("semantic", 250, "pitch") == 387
  assert musiclm_spec.window_tokens("coarse", 50, "pitch") == 487
  assert (SEMANTIC.melody_kind, COARSE.melody_kind) == ("pitch", "pitch")
  assert musiclm_spec.semantic_stage(True).melody_kind == "melody"
  assert musiclm_spec.semantic_stage().melody_kind is None
  with pytest.raises(ValueError, match="melody 'chroma'"):
    musiclm_spec.semantic_stage("chroma")


@pytest.fixture(scope="module")
def pitch_cache(tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp("pitch_cache"))
  rng = np.random.default_rng(0)
  records = {}
  for split, frames in (("train", (60, 200)), ("validation", (100,))):
    split_records = []
    for i, n in enumerate(frames):
      record = random_record(rng, f"{split}-{i}", n)
      starts = np.sort(rng.uniform(0, n / 25, 12))
      record.labels["melody"] = {"pitch": rng.integers(48, 84, 12).tolist(),
                                 "start_s": starts.tolist(), "end_s": (starts + 0.3).tolist()}
      split_records.append(record)
    token_cache.write_shard(token_cache.shard_path(cache_dir, split, 0, 1), split_records, {})
    records.update((r.clip_id, r) for r in split_records)
  config = {"mulan": {"num_levels": 12, "codebook_size": 1024}, "semantic": {"codebook_size": 1024},
            "acoustic": {"num_levels": 12, "codebook_size": 1024}}
  token_cache.write_metadata(cache_dir, config,
                             {"train": {"num_shards": 1}, "validation": {"num_shards": 1}})
  return cache_dir, records


@pytest.mark.parametrize("stage", ["semantic", "coarse"])
def test_pitch_crops_hold_the_labels_codes_of_their_time(pitch_cache, stage):
  cache_dir, records = pitch_cache
  crop_seconds = 4.0 if stage == "semantic" else 1.0
  name = tasks.register_cache_task(stage, cache_dir, crop_seconds, name=f"p_{stage}",
                                   melody="pitch")
  layout = (SEMANTIC if stage == "semantic" else COARSE).layout
  frames = round(crop_seconds * 25)
  length = tasks.feature_lengths(stage, crop_seconds, melody="pitch")["targets"]
  assert length == musiclm_spec.window_tokens(stage, frames, "pitch")
  examples = tasks.random_access(name)
  starts = set()
  for index in range(2):
    for seed in range(5):
      ex = examples.example("train", index, np.random.default_rng(seed))
      record = records[ex["clip_id"]]
      start = int(ex["crop_start_frame"]) // musiclm_spec.ACOUSTIC_PER_SEMANTIC
      n = min(frames, len(record.semantic) - start)
      starts.add(start % 2)
      tune = tune_pitch.from_notes(melody_voices.melody_notes(record.labels),
                                   -(-len(record.semantic) // 2))
      first, last = musiclm_spec.melody_frames(start, start + n, len(tune), "pitch")
      codes = {"mulan": record.mulan[None], "pitch": tune[first:last],
               "semantic": record.semantic[start:start + n, None]}
      if stage == "coarse":
        codes["coarse"] = record.acoustic[2 * start:2 * (start + n), :4]
      np.testing.assert_array_equal(ex["targets"], tasks.stage_sequence(layout, codes))
      assert len(ex["targets"]) <= length
  assert starts == {0, 1}  # crops that start inside a pitch frame too
  # Through SeqIO (tf.data, labels parsed from the records' JSON) the same crops come out.
  import seqio  # pylint: disable=import-outside-toplevel
  ds = seqio.get_mixture_or_task(name).get_dataset({"targets": length}, split="validation",
                                                   shuffle=False, seed=0, num_epochs=1)
  [ex] = list(ds.as_numpy_iterator())
  view = examples.example("validation", 0, np.random.default_rng(0))
  record = records[ex["clip_id"].decode()]
  start = int(ex["crop_start_frame"]) // 2
  ids = ex["targets"]
  tune = tune_pitch.from_labels(record.labels, 50)
  got = layout.decode_stream("pitch", ids[layout.contains("pitch", ids)])
  first, _ = musiclm_spec.melody_frames(start, start + frames, 50, "pitch")
  np.testing.assert_array_equal(got, tune[first:first + len(got)])
  assert len(view["targets"]) == len(ids)


def test_pitch_tasks_need_labels_and_not_the_fine_stage(tmp_path):
  cache_dir = str(tmp_path)
  record = random_record(np.random.default_rng(0), 0, 50)
  del record.labels["melody"]
  token_cache.write_shard(token_cache.shard_path(cache_dir, "train", 0, 1), [record], {})
  token_cache.write_metadata(cache_dir, {
      "mulan": {"num_levels": 12, "codebook_size": 1024}, "semantic": {"codebook_size": 1024},
      "acoustic": {"num_levels": 12, "codebook_size": 1024}}, {"train": {"num_shards": 1}})
  name = tasks.register_cache_task("semantic", cache_dir, 1.0, name="p_bad", melody="pitch")
  with pytest.raises(UserError, match="has no melody labels"):
    tasks.random_access(name).example("train", 0, np.random.default_rng(0))
  with pytest.raises(UserError, match="semantic and coarse stages, not fine"):
    tasks.feature_lengths("fine", melody="pitch")


def test_pitch_dropout_nulls_the_pitch_codes_alone():
  rng = np.random.default_rng(0)
  sequence = tasks.stage_sequence(COARSE.layout, {
      "mulan": rng.integers(0, 1024, (1, 12)), "pitch": rng.integers(0, 13, (2, 1)),
      "semantic": rng.integers(0, 1024, (4, 1)), "coarse": rng.integers(0, 1024, (8, 4))})[None]
  inputs = np.concatenate([[[token_layout.PAD_ID]], sequence[:, :-1]], 1)
  batch = {"decoder_input_tokens": inputs, "decoder_target_tokens": sequence,
           "decoder_loss_weights": np.ones_like(sequence)}
  plain = lm.DecoderOnlyLM(TINY, COARSE, frame_positions=True)
  dropping = lm.DecoderOnlyLM(TINY, COARSE, melody_dropout_rate=1.0, frame_positions=True)
  params = model_params(plain, seed=0)
  nulled = np.where(COARSE.layout.contains("pitch", inputs), token_layout.NULL_ID, inputs)
  key = jax.random.PRNGKey(3)
  loss_dropped, _ = jax.jit(dropping.loss_fn)(params, batch, key)
  loss_nulled, _ = jax.jit(plain.loss_fn)(params, dict(batch, decoder_input_tokens=nulled), key)
  np.testing.assert_allclose(loss_dropped, loss_nulled, rtol=1e-6)


def _pitch_cascade(coarse_reads_pitch=True, **kwargs):
  stages = tiny_stage_lms()
  built = []
  for seed, stage in enumerate((SEMANTIC, COARSE if coarse_reads_pitch else None)):
    if stage is None:
      built.append(stages["coarse"])
      continue
    model = lm.DecoderOnlyLM(TINY, stage, frame_positions=True)
    built.append(cascade_lib.StageLM(model, model_params(model, seed=7 + seed)))
  return cascade_lib.Cascade(
      fake_tokenizers.FakeConditioningTokenizer(), fake_tokenizers.FakeAcousticTokenizer(),
      *built, stages["fine"], **{"windows": WINDOWS, **kwargs})


def test_both_stages_read_the_hummed_tunes_codes_of_each_window(monkeypatch):
  musiclm = _pitch_cascade()
  assert isinstance(musiclm.melody_tokenizer, pitch_tokenizer.PitchTokenizer)  # no export needed
  audio = melody_voices.render(melody_voices.WHISTLE, NOTES, 1.2, RATE_HZ,
                               np.random.default_rng(1))
  tune = pitch_tokenizer.PitchTokenizer().tokenize(audio[None])[0]
  assert len(set(tune[:, 0])) > 2
  seen = []
  sample = cascade_lib.Cascade._sample

  def spy(self, stage, rows, index, prompt, *args):
    seen.append((stage, prompt.copy()))
    return sample(self, stage, rows, index, prompt, *args)
  monkeypatch.setattr(cascade_lib.Cascade, "_sample", spy)
  request = cascade_lib.Request.from_text("piano", 0.8, seed=1, melody=audio)
  [generation] = musiclm.generate([request], batch_size=1)
  monkeypatch.undo()
  for stage in ("semantic", "coarse"):
    layout = (SEMANTIC if stage == "semantic" else COARSE).layout
    prompts = [p for s, p in seen if s == stage]
    chunks = [c for c in generation.chunks if c.stage == stage]
    assert len(prompts) == len(chunks) > 1
    for prompt, chunk in zip(prompts, chunks):
      first, last = musiclm_spec.melody_frames(chunk.prefix_start, chunk.end, len(tune), "pitch")
      np.testing.assert_array_equal(
          layout.decode_stream("pitch", prompt[0, 12:12 + last - first]), tune[first:last])
  # Cached = full recompute, with the tune; and the tune changes the music.
  [full] = _pitch_cascade(use_cache=False).generate([request], batch_size=1)
  np.testing.assert_array_equal(generation.acoustic, full.acoustic)
  [plain] = musiclm.generate([cascade_lib.Request.from_text("piano", 0.8, seed=1)], batch_size=1)
  assert not np.array_equal(generation.semantic, plain.semantic)


def test_stages_of_two_melody_kinds_do_not_make_a_cascade():
  stages = tiny_stage_lms()
  semantic = lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage(True))
  coarse = lm.DecoderOnlyLM(TINY, COARSE)
  with pytest.raises(UserError, match="the stages read different melody kinds"):
    cascade_lib.Cascade(fake_tokenizers.FakeConditioningTokenizer(),
                        fake_tokenizers.FakeAcousticTokenizer(),
                        cascade_lib.StageLM(semantic, model_params(semantic, seed=0)),
                        cascade_lib.StageLM(coarse, model_params(coarse, seed=0)), stages["fine"],
                        windows=WINDOWS, melody_tokenizer=fake_tokenizers.FakeMelodyTokenizer())
  # A semantic stage alone may read the tune.
  assert _pitch_cascade(coarse_reads_pitch=False).melody_kinds() == {
      "semantic": "pitch", "coarse": None, "fine": None}


@pytest.mark.parametrize("stage", ["semantic", "coarse"])
def test_the_pitch_gin_files_condition_the_stage_and_its_task_on_the_tune(pitch_cache, stage):
  import gin  # pylint: disable=import-outside-toplevel
  from musiclm_jax import gin_utils  # pylint: disable=import-outside-toplevel
  try:
    gin_utils.parse_gin([f"experiments/{stage}_pitch_stage.gin"],
                        [f"TOKEN_CACHE_DIR = '{pitch_cache[0]}'", "CROP_SECONDS = 1.0"])
    name = gin.get_configurable(tasks.register_cache_task)()
    lengths = gin.get_configurable(tasks.feature_lengths)()
    model = gin.get_configurable(lm.DecoderOnlyLM)()
  finally:
    gin.clear_config()
  assert model.stage.melody_kind == "pitch" and model.melody_dropout_rate == 0.5
  assert model.config.frame_clocks == model.stage.frame_clocks()
  assert lengths == tasks.feature_lengths(stage, 1.0, melody="pitch")
  ids = tasks.random_access(name).example("train", 1, np.random.default_rng(0))["targets"]
  assert model.stage.layout.contains("pitch", ids).sum() == 13  # 25 semantic frames
