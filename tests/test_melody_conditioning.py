"""The semantic stage on [M | melody]: alignment, task crops, melody dropout, the cascade, infer, adherence."""
import dataclasses
import json

import jax
import numpy as np
import pytest
import soundfile

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import inference
from musiclm_jax import musiclm_spec
from musiclm_jax.audio import pitch as audio_pitch
from musiclm_jax.data import melody_voices
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import melody as melody_eval
from musiclm_jax.eval import pitch_model
from musiclm_jax.models import lm
import fake_tokenizers
from numpy_params import model_params
from test_cascade import TINY, WINDOWS, tiny_stage_lms
from test_tasks import write_cache
from test_token_cache import random_record

STAGE = musiclm_spec.semantic_stage(melody=True)
LAYOUT = STAGE.layout
LEVELS = token_layout.MELODY.num_levels
RATE_HZ = musiclm_spec.SAMPLE_RATE_HZ
CROP_SECONDS = 4.0  # 100 semantic frames: 2 melody frames
CLIP_FRAMES = (60, 200, 400)  # 2.4 s (1 melody frame), 8 s (3), 16 s (5)


def test_melody_frames_cover_a_span_with_a_fixed_count_and_keep_inside_the_melody():
  assert musiclm_spec.SEMANTIC_PER_MELODY_FRAME["melody"] == 75  # 3 s at 25 Hz
  assert musiclm_spec.melody_frames(0, 750) == (0, 10)  # a paper crop: ten windows
  assert musiclm_spec.melody_frames(375, 1125) == (5, 15)  # the next window, 15 s on
  assert musiclm_spec.melody_frames(80, 90) == (1, 2)
  assert musiclm_spec.melody_frames(375, 1125, 12) == (2, 12)  # the melody's last ten
  assert musiclm_spec.melody_frames(375, 1125, 4) == (0, 4)  # a short melody: all of it


def _melody_record(rng, index, frames):
  record = random_record(rng, index, frames)
  num_windows = fake_tokenizers.FakeMelodyTokenizer().num_frames(record.num_samples)
  record.melody = rng.integers(0, 512, (num_windows, LEVELS)).astype(np.int32)
  return record


@pytest.fixture(scope="module")
def melody_cache(tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp("melody_cache"))
  rng = np.random.default_rng(0)
  records = {}
  for split, frames in (("train", CLIP_FRAMES), ("validation", (100,))):
    split_records = [_melody_record(rng, f"{split}-{i}", n) for i, n in enumerate(frames)]
    token_cache.write_shard(token_cache.shard_path(cache_dir, split, 0, 1), split_records, {})
    records.update((r.clip_id, r) for r in split_records)
  config = {"mulan": {"num_levels": 12, "codebook_size": 1024}, "semantic": {"codebook_size": 1024},
            "acoustic": {"num_levels": 12, "codebook_size": 1024},
            "melody": {"num_levels": LEVELS, "codebook_size": 512, "hop_seconds": 3.0}}
  token_cache.write_metadata(cache_dir, config,
                             {"train": {"num_shards": 1}, "validation": {"num_shards": 1}})
  return cache_dir, records


def test_melody_crops_hold_the_melody_frames_of_their_time(melody_cache):
  cache_dir, records = melody_cache
  name = tasks.register_cache_task("semantic", cache_dir, CROP_SECONDS, name="m_sem", melody=True)
  lengths = tasks.feature_lengths("semantic", CROP_SECONDS, melody=True)
  assert lengths == {"targets": 12 + 2 * LEVELS + 100}
  examples = tasks.random_access(name)
  seen_melody_starts = set()
  for index in range(3):
    for seed in range(6):
      ex = examples.example("train", index, np.random.default_rng(seed))
      record = records[ex["clip_id"]]
      start = int(ex["crop_start_frame"]) // musiclm_spec.ACOUSTIC_PER_SEMANTIC
      frames = min(100, len(record.semantic) - start)
      first, last = musiclm_spec.melody_frames(start, start + frames, len(record.melody))
      seen_melody_starts.add(first)
      expected = tasks.stage_sequence(LAYOUT, {
          "mulan": record.mulan[None], "melody": record.melody[first:last],
          "semantic": record.semantic[start:start + frames, None]})
      np.testing.assert_array_equal(ex["targets"], expected)
      assert len(ex["targets"]) <= lengths["targets"]
  assert len(seen_melody_starts) > 2  # crops start in several melody windows
  # Through SeqIO (tf.data) the same crops come out as by random access.
  import seqio  # pylint: disable=import-outside-toplevel
  ds = seqio.get_mixture_or_task(name).get_dataset(lengths, split="validation", shuffle=False,
                                                   seed=0, num_epochs=1)
  [ex] = list(ds.as_numpy_iterator())
  record = records[ex["clip_id"].decode()]  # 4 s: the whole clip, its one melody window
  np.testing.assert_array_equal(ex["targets"], tasks.stage_sequence(LAYOUT, {
      "mulan": record.mulan[None], "melody": record.melody, "semantic": record.semantic[:, None]}))


def test_a_null_melody_crop_is_the_crop_of_the_stage_without_melody(melody_cache):
  _, records = melody_cache
  frames = tasks.crop_frames("semantic", CROP_SECONDS)
  plain_layout = tasks.LAYOUTS["semantic"]
  for record in records.values():
    with_melody, start = tasks.crop_ids("semantic", frames, record.mulan, record.semantic,
                                        record.acoustic, np.random.default_rng(7), record.melody)
    plain, plain_start = tasks.crop_ids("semantic", frames, record.mulan, record.semantic,
                                        record.acoustic, np.random.default_rng(7))
    assert start == plain_start
    nulled = np.asarray(lm.DecoderOnlyLM(TINY, STAGE).remove_conditioning(
        with_melody[None], kinds=("melody",)))[0]
    assert (nulled == token_layout.NULL_ID).sum() == LAYOUT.contains("melody", with_melody).sum() > 0
    kept = nulled[nulled != token_layout.NULL_ID]
    np.testing.assert_array_equal(LAYOUT.decode("mulan", kept[:12]),
                                  plain_layout.decode("mulan", plain[:12]))
    np.testing.assert_array_equal(LAYOUT.decode_stream("semantic", kept[12:]),
                                  plain_layout.decode_stream("semantic", plain[12:]))


def test_melody_tasks_need_melody_tokens(tmp_path):
  write_cache(tmp_path, seed=1)
  with pytest.raises(UserError, match="has no melody tokens: re-tokenize with MELODY_EXPORT_DIR"):
    tasks.register_cache_task("semantic", str(tmp_path), CROP_SECONDS, name="m_bad", melody=True)


def test_melody_dropout_replaces_the_melody_tokens_alone():
  rng = np.random.default_rng(0)
  sequence = tasks.stage_sequence(LAYOUT, {
      "mulan": rng.integers(0, 1024, (1, 12)), "melody": rng.integers(0, 512, (2, LEVELS)),
      "semantic": rng.integers(0, 1024, (20, 1))})[None]
  batch = {"decoder_input_tokens": np.concatenate([[[token_layout.PAD_ID]], sequence[:, :-1]], 1),
           "decoder_target_tokens": sequence, "decoder_loss_weights": np.ones_like(sequence)}
  plain = lm.DecoderOnlyLM(TINY, STAGE)
  dropping = lm.DecoderOnlyLM(TINY, STAGE, melody_dropout_rate=1.0)
  params = model_params(plain, seed=0)
  nulled = np.asarray(plain.remove_conditioning(batch["decoder_input_tokens"], kinds=("melody",)))
  changed = nulled != batch["decoder_input_tokens"]
  assert (LAYOUT.contains("melody", batch["decoder_input_tokens"]) == changed).all()
  key = jax.random.PRNGKey(3)
  plain_loss = jax.jit(plain.loss_fn)  # one compile is cheaper than op-by-op
  loss_dropped, _ = jax.jit(dropping.loss_fn)(params, batch, key)
  loss_nulled, _ = plain_loss(params, dict(batch, decoder_input_tokens=nulled), key)
  loss_kept, _ = plain_loss(params, batch, key)
  np.testing.assert_allclose(loss_dropped, loss_nulled, rtol=1e-6)
  assert abs(float(loss_dropped) - float(loss_kept)) > 1e-4
  with pytest.raises(ValueError, match="melody_dropout_rate needs a stage conditioned on a melody kind"):
    lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage(), melody_dropout_rate=0.5)


def _melody_cascade(melody_tokenizer=fake_tokenizers.FakeMelodyTokenizer(),
                    **kwargs) -> cascade_lib.Cascade:
  stages = tiny_stage_lms()
  model = lm.DecoderOnlyLM(TINY, STAGE)
  semantic = cascade_lib.StageLM(model, model_params(model, seed=5))
  return cascade_lib.Cascade(
      fake_tokenizers.FakeConditioningTokenizer(), fake_tokenizers.FakeAcousticTokenizer(),
      semantic, stages["coarse"], stages["fine"], melody_tokenizer=melody_tokenizer,
      **{"windows": WINDOWS, **kwargs})


@pytest.fixture(scope="module")
def melody_musiclm():
  return _melody_cascade()


def _tune(seconds, midi=(60, 64, 67, 72), level=0.3, harmonics=(1,)):
  """A tune of one note per 0.5 s cycling through `midi`; harmonic k at level / k."""
  t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
  notes = np.asarray(midi)[(t // 0.5).astype(int) % len(midi)]
  phase = 2 * np.pi * np.cumsum(melody_voices.midi_to_hz(notes)) / RATE_HZ
  return sum(level / k * np.sin(k * phase) for k in harmonics).astype(np.float32)


def _prompts(musiclm, request, monkeypatch):
  """The semantic stage's prompts while generating `request`."""
  seen = []
  sample = cascade_lib.Cascade._sample

  def spy(self, stage, rows, index, prompt, *args):
    if stage == "semantic":
      seen.append(prompt.copy())
    return sample(self, stage, rows, index, prompt, *args)
  monkeypatch.setattr(cascade_lib.Cascade, "_sample", spy)
  [generation] = musiclm.generate([request], batch_size=1)
  monkeypatch.undo()
  return seen, generation


def test_melody_prompts_condition_the_semantic_stage(melody_musiclm, monkeypatch):
  loud, quiet = _tune(8.0), _tune(8.0, level=0.05)
  request = cascade_lib.Request.from_text("piano", 0.8, seed=1, melody=loud)
  prompts, generation = _prompts(melody_musiclm, request, monkeypatch)
  expected = fake_tokenizers.FakeMelodyTokenizer().tokenize(loud[None])[0]  # 3 frames
  for prompt in prompts:  # 0.4 s windows all lie in the first 3 s window
    np.testing.assert_array_equal(LAYOUT.decode_stream("melody", prompt[0, 12:12 + LEVELS]),
                                  expected[:1])
  other = melody_musiclm.generate([cascade_lib.Request.from_text("piano", 0.8, seed=1,
                                                                 melody=quiet)], batch_size=1)[0]
  assert not np.array_equal(generation.semantic, other.semantic)
  one_window = dataclasses.replace(request, segments=(("piano", 0.4),))
  [cached] = melody_musiclm.generate([one_window], batch_size=1)
  [full] = _melody_cascade(use_cache=False).generate([one_window], batch_size=1)
  np.testing.assert_array_equal(cached.semantic, full.semantic)
  np.testing.assert_array_equal(cached.acoustic, full.acoustic)


def test_text_alone_gives_a_melody_stage_null_melody_and_the_plain_prompt(melody_musiclm,
                                                                           monkeypatch):
  request = cascade_lib.Request.from_text("piano", 0.8, seed=2)
  prompts, generation = _prompts(melody_musiclm, request, monkeypatch)
  mulan = fake_tokenizers.FakeConditioningTokenizer().text_tokens(["piano"])
  chunks = [c for c in generation.chunks if c.stage == "semantic"]
  assert len(prompts) == len(chunks) > 1
  plain_layout = musiclm_spec.semantic_stage().layout
  for prompt, chunk in zip(prompts, chunks):
    np.testing.assert_array_equal(prompt[:, 12:12 + LEVELS], token_layout.NULL_ID)
    # Without its NULL melody, the prompt is the stage-without-melody's prompt, id for id in codes.
    plain = tasks.stage_sequence(plain_layout, {
        "mulan": mulan, "semantic": generation.semantic[chunk.prefix_start:chunk.start, None]})
    kept = prompt[0][prompt[0] != token_layout.NULL_ID]
    np.testing.assert_array_equal(LAYOUT.decode("mulan", kept[:12]),
                                  plain_layout.decode("mulan", plain[:12]))
    np.testing.assert_array_equal(LAYOUT.decode_stream("semantic", kept[12:]),
                                  plain_layout.decode_stream("semantic", plain[12:]))


def test_melody_requests_a_cascade_cannot_serve_are_one_line_errors(melody_musiclm):
  request = cascade_lib.Request.from_text("piano", 0.8, melody=_tune(2.0))
  plain = cascade_lib.Cascade(fake_tokenizers.FakeConditioningTokenizer(),
                              fake_tokenizers.FakeAcousticTokenizer(), *tiny_stage_lms().values(),
                              windows=WINDOWS, melody_tokenizer=fake_tokenizers.FakeMelodyTokenizer())
  with pytest.raises(UserError, match="trained without melody conditioning"):
    plain.check_request(request)
  with pytest.raises(UserError, match="set MELODY_EXPORT_DIR and MELODY_RVQ_PATH"):
    _melody_cascade(melody_tokenizer=None).check_request(request)
  with pytest.raises(UserError, match="non-empty audio"):
    melody_musiclm.check_request(cascade_lib.Request.from_text("piano", 0.8,
                                                               melody=np.zeros(0, np.float32)))
  with pytest.raises(UserError, match="the melody tokenizer gives 24 x 512 codes every 2.0 s"):
    tokenizer = fake_tokenizers.FakeMelodyTokenizer()
    tokenizer.hop_seconds = 2.0
    _melody_cascade(melody_tokenizer=tokenizer)
  # A 1.44 s semantic window is BOS + 36 S + 12 M = 49 tokens; a melody stage reads 24 more.
  windows = dataclasses.replace(WINDOWS, semantic_window_seconds=1.44)
  cascade_lib.Cascade(fake_tokenizers.FakeConditioningTokenizer(),
                      fake_tokenizers.FakeAcousticTokenizer(), *tiny_stage_lms().values(),
                      windows=windows, max_length=49)
  with pytest.raises(UserError, match="a semantic window is 73 tokens, more than max_length 49"):
    _melody_cascade(windows=windows, max_length=49)
  # Melodies of other lengths never share a batch (their prompts differ in shape).
  requests = [cascade_lib.Request.from_text("a", 0.8, melody=_tune(s)) for s in (2.0, 2.0, 5.0)]
  assert cascade_lib.plan_batches(requests + [cascade_lib.Request.from_text("a", 0.8)], 4) == [
      [0, 1], [2], [3]]


def test_melody_from_prompts_make_wavs_and_the_page_shows_the_melody(melody_musiclm, tmp_path):
  soundfile.write(tmp_path / "hum.wav", _tune(2.0), RATE_HZ)
  soundfile.write(tmp_path / "noise.wav",
                  np.random.default_rng(0).normal(0, 0.3, 2 * RATE_HZ).astype(np.float32), RATE_HZ)
  soundfile.write(tmp_path / "short.wav", _tune(0.5), RATE_HZ)
  lines = [{"text": "piano", "melody_from": "hum.wav", "num_samples": 2},
           {"text": "piano", "melody_from": "missing.wav"},
           {"text": "piano", "melody_from": "noise.wav"},
           {"text": "piano", "melody_from": "short.wav"},
           "piano without a melody"]
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines))
  result = inference.infer(load_cascade=lambda: melody_musiclm, prompts_file=str(prompts),
                           output_dir=str(tmp_path / "out"),
                           defaults=inference.PromptDefaults(seconds=0.8), batch_size=1)
  assert result["num_ok"] == 2
  assert result["errors"][0].startswith("line 2: melody_from file ") and "missing.wav does not " \
      "exist" in result["errors"][0]
  assert result["errors"][1].startswith("line 3: melody_from noise.wav: no tune found")
  assert result["errors"][2].startswith("line 4: melody_from: ") and "shorter than the minimum" \
      in result["errors"][2]
  records = {r["line"]: r for r in map(json.loads, open(result["results_path"]))}
  record = records[1]
  assert record["melody_from"] == str(tmp_path / "hum.wav") and records[5]["melody_from"] is None
  for sample in record["samples"]:
    assert soundfile.info(tmp_path / "out" / sample["wav"]).frames == round(0.8 * RATE_HZ)
  np.testing.assert_allclose(soundfile.read(tmp_path / "out" / record["melody"]["wav"])[0],
                             _tune(2.0), atol=1e-4)
  page = (tmp_path / "out" / "index.html").read_text()
  assert page.count(record["melody"]["wav"]) == 1 and "melody: hum.wav" in page
  assert page.count(record["melody"]["spectrogram"]) == 1


def test_agreement_counts_tune_frames_among_the_musics_strongest_classes_in_any_key():
  # Independent reference: hand-made contours and pitch-class profiles, counted by hand.
  tune = np.array([60, 62, 64, np.nan, 67])  # C D E (unvoiced) G: classes 0 2 4 - 7
  music = np.zeros((5, 12))
  music[0, [0, 3, 8]] = 0.5, 0.9, 0.9  # C third strongest: in the top 3
  music[1, [2, 3, 8, 10]] = 0.5, 0.9, 0.9, 0.9  # D fourth: out
  music[2, 4] = 0.5  # E alone
  music[4, [7, 1, 5, 9]] = 0.5  # G tied with three others: ties count against it
  # Shift 0: frames 0 and 2 agree; shift 8 (C->G#, D->A#): frames 0 and 1; none does 3.
  assert melody_eval.pitch_class_agreement(tune, music) == 2 / 4
  assert melody_eval.pitch_class_agreement(tune, music, top=1) == 1 / 4
  assert melody_eval.pitch_class_agreement(tune, music, top=4) == 4 / 4
  transposed = np.zeros((5, 12))
  transposed[[0, 1, 2, 4], [5, 7, 9, 0]] = 1.0  # the tune a fourth up: still the tune
  assert melody_eval.pitch_class_agreement(tune, transposed, top=1) == 1.0
  assert melody_eval.pitch_class_agreement(tune, np.zeros((5, 12))) == 0.0  # silence
  assert melody_eval.pitch_class_agreement(tune, np.ones((5, 12))) == 0.0  # no class stands out
  assert melody_eval.pitch_class_agreement(np.full(5, np.nan), transposed) == 0.0
  assert melody_eval.pitch_class_agreement(tune, transposed[:2], top=1) == 2 / 2  # the shorter


@pytest.fixture(scope="module")
def basic_pitch():
  return pitch_model.BasicPitch()


def test_adherence_prefers_the_own_melody_in_any_key_over_another(basic_pitch):
  # Audio through pYIN (the tune) and basic-pitch (the music): music plays its tune a fifth up
  # with harmonics; the swapped tune's notes are each at another interval from it.
  melodies = ((60, 64, 67, 72), (62, 63, 70, 57))
  tunes = [_tune(3.0, m) for m in melodies]
  music = [_tune(3.0, np.add(m, 7), harmonics=(1, 2, 3)) for m in melodies]
  result = melody_eval.melody_adherence(music, tunes, RATE_HZ, basic_pitch)
  assert result["num_pairs"] == 2 and result["top_pitch_classes"] == 3
  assert min(result["matched_per_pair"]) > 0.8 and max(result["mismatched_per_pair"]) < 0.6
  with pytest.raises(UserError, match="needs >= 2"):
    melody_eval.melody_adherence(music[:1], tunes[:1], RATE_HZ, basic_pitch)


def test_swapped_adherence_measures_the_music_given_another_melody_against_this_one(basic_pitch):
  # The demo's control: music for melody i, and music (same text, seed) given melody i + 1,
  # both against melody i. Here the swapped music plays the other tune, a fifth up.
  melodies = ((60, 64, 67, 72), (62, 63, 70, 57))
  tunes = [_tune(3.0, m) for m in melodies]
  music = [_tune(3.0, np.add(m, 7), harmonics=(1, 2, 3)) for m in melodies]
  result = melody_eval.swapped_melody_adherence(music, music[::-1], tunes, RATE_HZ, basic_pitch)
  reference = melody_eval.melody_adherence(music, tunes, RATE_HZ, basic_pitch)
  assert result["num_pairs"] == 2
  assert result["matched_per_pair"] == reference["matched_per_pair"]
  # Pair i's swapped music is tune i + 1 (= i - 1 of two): melody_adherence's mismatch, reversed.
  assert result["mismatched_per_pair"] == reference["mismatched_per_pair"][::-1]
  assert result["matched"] > 0.8 and result["mismatched"] < 0.6
  with pytest.raises(UserError, match="as many"):
    melody_eval.swapped_melody_adherence(music, music[:1], tunes, RATE_HZ, basic_pitch)


def test_music_pitch_classes_follow_a_played_tune_on_the_contour_frame_grid(basic_pitch):
  # A tune of one note per 0.5 s: each contour frame well inside a note names its class first.
  music = _tune(2.0, (60, 64, 67, 71), harmonics=(1, 2, 3))
  classes = melody_eval.music_pitch_classes(basic_pitch, music, RATE_HZ)
  contour, _ = audio_pitch.pitch_contour(music, RATE_HZ)
  assert classes.shape == (len(contour), 12)
  times = np.arange(len(classes)) / audio_pitch.FRAMES_PER_SECOND
  inside = (times % 0.5 > 0.1) & (times % 0.5 < 0.4) & (times < 1.9)
  expected = np.array([0, 4, 7, 11])[(times[inside] // 0.5).astype(int)]
  np.testing.assert_array_equal(classes[inside].argmax(axis=1), expected)


@pytest.mark.parametrize("melody_seconds,tokenized_samples", [(0.3, 19_200), (1.0, 24_000)])
def test_a_melody_shorter_than_the_music_repeats_and_a_longer_one_is_kept_whole(
    melody_musiclm, monkeypatch, melody_seconds, tokenized_samples):
  seen = []
  tokenize = melody_musiclm.melody_tokenizer.tokenize
  monkeypatch.setattr(melody_musiclm.melody_tokenizer, "tokenize",
                      lambda audio: seen.append(audio) or tokenize(audio))
  tune = _tune(melody_seconds)
  melody_musiclm.generate([cascade_lib.Request.from_text("piano", 0.8, seed=3, melody=tune)],
                          batch_size=1)
  [audio] = seen
  # 0.8 s of music (19,200 samples) hears the 0.3 s tune 2 2/3 times, from its start each time.
  np.testing.assert_array_equal(audio, np.tile(tune, 4)[None, :tokenized_samples])
