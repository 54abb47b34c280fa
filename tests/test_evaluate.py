"""musiclm-eval on a fake musiclm-infer folder against the micro synth corpus.

The generated folder holds the reference clips themselves (so the generated
set must score like the real one) and the unconditional folder holds chords
(so it must score worse); the shuffled baseline and MCC are recomputed here
from the taggers' and fake MuLan's outputs, independently of eval/suite.py.
"""
import dataclasses
import html
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import linalg
from scipy import special
from scipy import stats

pytest.importorskip("musicnn", reason="musicnn is not installed (pip install --no-deps musicnn==0.1.0)")

from musiclm_jax import results_file  # pylint: disable=g-import-not-at-top
from musiclm_jax import window_plan
from musiclm_jax.audio import io as audio_io
from musiclm_jax.audio import pitch
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import coherence
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import melody
from musiclm_jax.eval import musicnn
from musiclm_jax.eval import pitch_model
from musiclm_jax.eval import prompt_adherence
from musiclm_jax.eval import report as report_lib
from musiclm_jax.eval import story
from musiclm_jax.eval import suite
from conftest import binary_env, run_binary

RATE_HZ = 24_000
SPLIT = "train"  # the micro corpus's largest split (6 clips)
TAGGER = "MTT_musicnn"
# Windows short enough for every stage to start new ones inside the 2 s clips.
WINDOWS = dataclasses.asdict(window_plan.Windows(
    semantic_window_seconds=1.2, semantic_stride_seconds=0.6, coarse_window_seconds=0.8,
    coarse_stride_seconds=0.4, fine_window_seconds=0.5, fine_stride_seconds=0.24))


def _chord(seconds, root_hz):
  t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
  return (0.2 * sum(np.sin(2 * np.pi * root_hz * r * t) for r in (1.0, 1.26, 1.5))).astype(np.float32)


def write_infer_folder(folder, texts, clips, rate_hz=RATE_HZ, record_rate_hz=RATE_HZ,
                       melody_lines=()):
  """A musiclm-infer OUTPUT_DIR: audio/*.wav and results.jsonl records of plain text lines;
  those of `melody_lines` have their own clip as melody_from input, and again as a plain text
  line after them (the text sets leave melody lines out)."""
  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  records = []
  for line, (text, clip) in enumerate(zip(texts, clips), start=1):
    wav = f"audio/line{line:04d}_sample0.wav"
    audio_io.save_wav(os.path.join(folder, wav), clip, rate_hz)
    records.append({"line": line, "text": text, "seconds": len(clip) / rate_hz, "seed": line,
                    "samples": [{"seed": line, "wav": wav}], "sample_rate_hz": record_rate_hz,
                    "windows": WINDOWS})
    if line in melody_lines:
      records.append(dict(records[-1], line=len(texts) + line, melody_from=f"melody{line}.wav",
                          melody={"wav": wav}))
  records.append({"line": 2 * len(texts) + 1, "story": [[texts[0], 2.0]], "samples": [],
                  "sample_rate_hz": record_rate_hz})  # left out: no single prompt
  with open(os.path.join(folder, results_file.NAME), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  return str(folder)


class FakeMuLan:
  """Text -> a random unit vector seeded by its characters; audio -> its 16 lowest DFT magnitudes."""
  sample_rate_hz = 16_000

  def text_embeddings(self, texts):
    return np.stack([np.random.default_rng([ord(c) for c in t]).normal(size=16) for t in texts])

  def audio_embeddings(self, audio):
    return np.abs(np.fft.rfft(audio, axis=-1))[:, 1:17]


class IdentityCodec:
  """Reconstructs perfectly: the codec baseline must equal the real set."""
  sample_rate_hz = RATE_HZ

  def encode(self, audio):
    return audio

  def decode(self, codes):
    return codes


@pytest.fixture(scope="module")
def corpus(synth_music_micro):
  data_dir = str(pathlib.Path(synth_music_micro.data_dir).parents[2])
  return {"dataset": "synth_music/micro", "data_dir": data_dir, "split": SPLIT}


@pytest.fixture(scope="module")
def reference(corpus):
  return clip_sets.read_reference(**corpus)


@pytest.fixture(scope="module")
def folders(reference, tmp_path_factory):
  assert reference.sample_rate_hz == RATE_HZ
  root = tmp_path_factory.mktemp("samples")
  generated = write_infer_folder(root / "generated", reference.texts, reference.audio,
                                 melody_lines=(1, 2, 3))
  chords = [_chord(2.0, 110.0 * 1.5 ** i) for i in range(len(reference.texts))]
  unconditional = write_infer_folder(root / "unconditional", reference.texts, chords)
  return {"generated": generated, "unconditional": unconditional}


@pytest.fixture(scope="module")
def tagger():
  return musicnn.MusicnnTagger(TAGGER)


@pytest.fixture(scope="module")
def judge(corpus, tagger):
  """Trained and scored on the same 6 clips: the real set's judge scores are training accuracy."""
  train = clip_sets.read_judge_split(**corpus)
  return label_judge.train(tagger, train.audio, train.sample_rate_hz, train.genre, train.instruments,
                           train.mood)


@pytest.fixture(scope="module")
def report(reference, folders, tagger, judge):
  generated = clip_sets.paired_set("generated", *clip_sets.read_infer_folder(folders["generated"]), reference)
  unconditional = clip_sets.paired_set(
      "unconditional", *clip_sets.read_infer_folder(folders["unconditional"]), reference)
  try:
    pitch = pitch_model.BasicPitch()
  except UserError:
    pitch = None
  return suite.run_suite(generated, reference, unconditional=unconditional,
                         taggers={TAGGER: tagger}, mulan=FakeMuLan(), codec=IdentityCodec(),
                         judge=judge, pitch=pitch)


def _value(report, metric, clip_set):
  return report["metrics"][metric]["values"][clip_set]


def test_generated_copies_of_the_reference_score_like_real_audio(report):
  assert report["sets"]["generated"] == {"title": "generated", "clips": 6, "paired_clips": 6}
  assert _value(report, f"KLD_{TAGGER}", "generated") < 1e-3
  assert _value(report, f"KLD_{TAGGER}", "real") == 0.0
  assert _value(report, "FAD_musicnn", "generated") < 0.05 * _value(report, "FAD_musicnn", "unconditional")
  for metric in ("tempo_accuracy", "key_accuracy", "key_weighted_score", "judge_genre_accuracy",
                 "judge_instrument_f1", "judge_mood_accuracy", "spectral_flatness"):
    assert _value(report, metric, "generated") == pytest.approx(_value(report, metric, "real"),
                                                                abs=1e-3)


def test_perfect_codec_equals_the_real_set(report):
  assert _value(report, "FAD_musicnn", "codec") == pytest.approx(0.0, abs=1e-6)
  assert _value(report, f"KLD_{TAGGER}", "codec") == pytest.approx(0.0, abs=1e-9)
  for metric in ("MCC", "tempo_accuracy", "key_accuracy"):
    assert _value(report, metric, "codec") == pytest.approx(_value(report, metric, "real"))


def test_shuffled_kld_and_mcc_match_an_independent_computation(report, reference, folders, tagger):
  generated, _, _ = clip_sets.read_infer_folder(folders["generated"])  # the reference clips as PCM16

  def tags(clips):
    return np.stack([tagger(a, RATE_HZ)["tag_probabilities"].mean(axis=0) for a in clips])

  prompts = sorted(reference.texts)
  order = prompt_adherence.derangement(len(prompts), seed=0)
  other = {prompts[i]: prompts[j] for i, j in enumerate(order)}
  partner = [reference.texts.index(other[t]) for t in reference.texts]

  def distribution(p):
    p = p + 1e-6
    return p / p.sum(axis=-1, keepdims=True)

  expected = np.mean(special.rel_entr(distribution(tags(reference.audio)[partner]),
                                      distribution(tags(generated))).sum(axis=-1))
  assert _value(report, f"KLD_{TAGGER}", "shuffled") == pytest.approx(expected, rel=1e-4)
  assert _value(report, f"KLD_{TAGGER}", "shuffled") > 10 * _value(report, f"KLD_{TAGGER}", "generated")

  mulan, cosines = FakeMuLan(), {}
  audio = mulan.audio_embeddings(np.stack([audio_io.resample(a, RATE_HZ, mulan.sample_rate_hz)
                                           for a in generated]))
  for clip_set, texts in (("generated", reference.texts), ("shuffled", [other[t] for t in reference.texts])):
    text = mulan.text_embeddings(texts)
    cosine = np.sum(text * audio, axis=1) / np.linalg.norm(text, axis=1) / np.linalg.norm(audio, axis=1)
    assert _value(report, "MCC", clip_set) == pytest.approx(cosine.mean(), rel=1e-4)
    cosines[clip_set] = cosine
  # The same clips against own and shuffled prompts: a paired test, here over all 2^6 sign flips.
  expected_p = stats.permutation_test(
      (cosines["generated"], cosines["shuffled"]), lambda x, y, axis: np.mean(x - y, axis=axis),
      vectorized=True, permutation_type="samples", alternative="greater").pvalue
  assert report["p_values"]["MCC"] == {"p_value": pytest.approx(expected_p), "test": "paired",
                                       "clips": [6, 6]}


def test_judge_learns_the_training_clips_and_noise_is_not_music(report):
  assert _value(report, "judge_genre_accuracy", "real") == 1.0  # its own training clips
  assert _value(report, "judge_mood_accuracy", "real") == 1.0
  # So its genre confusion on real clips is diagonal; the generated clips are copies of them.
  real = report["judge_genre_confusion"]["real"]["counts"]
  assert np.sum(real) == 6 and np.trace(real) == 6
  assert report["judge_genre_confusion"]["generated"] == report["judge_genre_confusion"]["real"]
  assert np.trace(report["judge_genre_confusion"]["shuffled"]["counts"]) < 6  # other prompts' genres
  assert "judge's genre on generated: " in report_lib.headline(report)
  assert _value(report, "FAD_musicnn", "noise") > 10 * _value(report, "FAD_musicnn", "generated")
  assert _value(report, "spectral_flatness", "noise") > _value(report, "spectral_flatness", "real")
  assert set(report["p_values"]) >= {"MCC", "judge_genre_accuracy", "judge_instrument_f1",
                                     "tempo_accuracy", "key_accuracy"}
  if "notes_per_second" in report["unavailable"]:
    pytest.skip("basic-pitch is not installed")
  # Noise with music's spectrum has its pitches, sounding at random: onsets at another rate
  # than the music's, and less pitch salience.
  values = {m: report["metrics"][m]["values"] for m in ("notes_per_second", "pitch_salience")}
  assert abs(values["notes_per_second"]["noise"] / values["notes_per_second"]["real"] - 1) > 0.2, values
  assert values["pitch_salience"]["noise"] < values["pitch_salience"]["real"], values


def test_every_metric_has_its_baselines_and_the_rest_says_why(report):
  for name, metric in report["metrics"].items():
    assert set(metric["values"]) == set(clip_sets.SETS), name
  # 6 clips of one 3 s window each: too few rows to extrapolate FAD.
  assert "FAD_inf_musicnn" in report["unavailable"]
  assert report["sets_not_given"] == {}
  text = report_lib.headline(report)
  assert "shuffled prompts" in text and "FAD_musicnn" in text and "unavailable" in text
  assert "coloured noise" in text and "p = " in text


def test_per_window_metrics_of_long_clips_match_a_hand_made_reference(reference, tagger):
  clips = reference.audio
  window = len(clips[0])
  assert all(len(clip) == window for clip in clips)  # the micro corpus: one clip length
  long_set = clip_sets.ClipSet("generated", [np.concatenate(clips[:3]), np.concatenate(clips[3:5]),
                                         clips[5]], RATE_HZ, reference.texts[:3], np.arange(3))
  real_windows = np.concatenate([tagger(clip, RATE_HZ)["mean_pool"] for clip in clips])
  mulan = FakeMuLan()
  result = coherence.per_window_metrics(long_set.audio, RATE_HZ, long_set.texts, window / RATE_HZ,
                                        tagger, real_windows, mulan)
  # Clip 2 is one window long: only clips 0 and 1 count, and clip 1 ends after two windows.
  assert result["clips"] == 2 and result["windows"] == [2, 2, 1]
  assert result["start_s"] == pytest.approx([0.0, window / RATE_HZ, 2 * window / RATE_HZ])
  by_position = [[(0, clips[0]), (1, clips[3])], [(0, clips[1]), (1, clips[4])], [(0, clips[2])]]
  for p, at in enumerate(by_position):
    rows = np.concatenate([tagger(audio, RATE_HZ)["mean_pool"] for _, audio in at])
    assert result["fad_rows"][p] == len(rows)
    if len(rows) < 2:
      assert result["FAD_musicnn"][p] is None
    else:
      mean, covariance = real_windows.mean(0), np.cov(real_windows, rowvar=False)
      other_mean, other_covariance = rows.mean(0), np.cov(rows, rowvar=False)
      root = linalg.sqrtm(covariance @ other_covariance).real
      expected = (np.sum((mean - other_mean) ** 2) + np.trace(covariance + other_covariance)
                  - 2 * np.trace(root))
      assert result["FAD_musicnn"][p] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    text = mulan.text_embeddings([reference.texts[i] for i, _ in at])
    audio = mulan.audio_embeddings(np.stack([audio_io.resample(a, RATE_HZ, mulan.sample_rate_hz)
                                             for _, a in at]))
    cosine = np.sum(text * audio, 1) / np.linalg.norm(text, axis=1) / np.linalg.norm(audio, axis=1)
    assert result["MCC"][p] == pytest.approx(cosine.mean(), rel=1e-5)
  cropped = clip_sets.cropped(long_set, window / RATE_HZ)
  assert coherence.per_window_metrics(cropped.audio, RATE_HZ, cropped.texts, window / RATE_HZ,
                                      tagger, real_windows, mulan) is None


def test_unpaired_prompts_make_paired_metrics_unavailable(reference, tagger):
  clips = clip_sets.paired_set("generated", [_chord(2.0, 220.0), _chord(2.0, 330.0)], RATE_HZ,
                           ["a prompt of no reference clip", "another one"], reference)
  result = suite.run_suite(clips, reference, taggers={TAGGER: tagger})
  assert "caption" in result["unavailable"][f"KLD_{TAGGER}"]
  assert "tempo_accuracy" in result["unavailable"] and "MCC" in result["unavailable"]
  assert set(result["sets_not_given"]) == {"unconditional", "codec"}
  assert set(result["metrics"]["FAD_musicnn"]["values"]) == {"generated", "shuffled", "real", "noise"}
  assert "caption" in result["unavailable"]["judge_genre_accuracy"]


def _one_line(error):
  message = str(error.value)
  assert "\n" not in message
  return message


def test_input_errors_are_one_line(corpus, reference, folders, tmp_path):
  with pytest.raises(UserError) as e:
    clip_sets.read_infer_folder(str(tmp_path))
  assert "no results.jsonl" in _one_line(e)
  with pytest.raises(UserError) as e:
    clip_sets.read_reference(**{**corpus, "split": "nonexistent"})
  assert "no split" in _one_line(e)
  with pytest.raises(UserError) as e:
    clip_sets.read_reference(**corpus, max_clips=3)
  assert "3 clip(s)" in _one_line(e)
  with pytest.raises(UserError) as e:
    clip_sets.read_reference("synth_music/micro", str(tmp_path), SPLIT)
  assert "prepare it first" in _one_line(e)
  mismatched = write_infer_folder(tmp_path / "rates", reference.texts[:2], reference.audio[:2],
                                  rate_hz=16_000)
  with pytest.raises(UserError) as e:
    clip_sets.read_infer_folder(mismatched)
  assert "16000 Hz but its record says 24000 Hz" in _one_line(e)
  one_prompt = write_infer_folder(tmp_path / "one", reference.texts[:1] * 2, reference.audio[:2])
  with pytest.raises(UserError) as e:
    clip_sets.read_infer_folder(one_prompt)
  assert "1 text prompt(s)" in _one_line(e)


def test_one_read_gives_the_text_lines_and_the_stitched_lines(reference, tmp_path, monkeypatch):
  folder = write_infer_folder(tmp_path / "lines", reference.texts, reference.audio)
  audio_io.save_wav(os.path.join(folder, "audio", "story.wav"), reference.audio[0], RATE_HZ)
  story = {"line": 99, "story": [[reference.texts[0], 1.0], [reference.texts[1], 1.0]],
           "samples": [{"seed": 0, "wav": "audio/story.wav"}], "sample_rate_hz": RATE_HZ,
           "windows": WINDOWS}
  with open(os.path.join(folder, results_file.NAME), "a") as f:
    f.write(json.dumps(story) + "\n")
  read, real_read = [], audio_io.read_audio
  monkeypatch.setattr(audio_io, "read_audio", lambda path: read.append(path) or real_read(path))
  (audio, rate, texts), (stitched, stitched_rate, stitchings), stories = (
      clip_sets.read_infer_lines(folder))
  assert len(read) == len(set(read)) == 7  # 6 text lines and the story line, each WAV once
  expected_audio, expected_rate, expected_texts = clip_sets.read_infer_folder(folder)
  assert (rate, texts) == (expected_rate, expected_texts) == (RATE_HZ, reference.texts)
  for clip, expected in zip(audio, expected_audio, strict=True):
    np.testing.assert_array_equal(clip, expected)
  assert stitched_rate == RATE_HZ and len(stitched) == 7
  assert all(a is b for a, b in zip(stitched, audio))  # the text lines' arrays, not copies
  assert stitchings[0] == (WINDOWS, (2.0,)) and stitchings[-1] == (WINDOWS, (1.0, 1.0))
  assert len(stories) == 1 and stories[0].audio is stitched[-1]  # the story line's array
  assert stories[0].segments == ((reference.texts[0], 1.0), (reference.texts[1], 1.0))


def test_story_lines_are_read_and_judged_per_window_like_real_clips(reference, tagger, judge,
                                                                     tmp_path):
  # Two reference clips of different genres, each looped to a 6 s segment: the generated
  # story is the real pseudo-story (as PCM16), so both must be judged alike.
  first = 0
  second = next(i for i, genre in enumerate(reference.genre) if genre != reference.genre[first])
  segments = [[reference.texts[first], 6.0], [reference.texts[second], 6.0]]
  folder = write_infer_folder(tmp_path / "story", reference.texts, reference.audio)
  audio_io.save_wav(os.path.join(folder, "audio", "story.wav"), np.concatenate(
      [np.resize(reference.audio[i], 6 * RATE_HZ) for i in (first, second)]), RATE_HZ)
  record = {"line": 98, "story": segments, "samples": [{"seed": 0, "wav": "audio/story.wav"}],
            "sample_rate_hz": RATE_HZ, "windows": WINDOWS}
  with open(os.path.join(folder, results_file.NAME), "a") as f:
    f.writelines(json.dumps(r) + "\n"
                 for r in (record, {**record, "line": 99, "continue_from": "intro.wav"}))
  _, (_, rate, _), stories = clip_sets.read_infer_lines(folder)
  assert rate == RATE_HZ and len(stories) == 1  # the continuation starts with its prompt audio
  assert stories[0].segments == tuple(map(tuple, segments))
  figures = story.story_report(stories, rate, reference, tagger, judge)
  generated, real = figures["generated"], figures["real"]
  # 12 s in 2.992 s windows: two inside segment 0, the third straddles 6 s, the fourth in 1.
  assert generated["windows"] == real["windows"] == 3
  assert generated["timelines"][0]["segment"] == [0, 0, 1]
  assert generated["timelines"][0]["predicted"] == real["timelines"][0]["predicted"]
  # Trained on these very clips, the judge hears each segment's genre.
  assert real["own_segment_accuracy"] == 1.0 and real["other_segment_accuracy"] == 0.0
  page = {"sets": {"generated": {"title": "generated", "clips": 1, "paired_clips": 1}},
          "metrics": {}, "unavailable": {}, "sets_not_given": {}, "story": figures}
  assert "story (judge's genre per 2.99 s window" in report_lib.headline(page)


def test_memorization_and_probe_input_errors_are_one_line(corpus, folders, tmp_path):
  with pytest.raises(UserError) as e:
    suite.evaluate(samples_dir=folders["generated"], **corpus, output_dir=str(tmp_path),
                   memorization_token_cache_dir=str(tmp_path))
  assert "MEMORIZATION_KMEANS_PATH" in _one_line(e)
  with pytest.raises(UserError) as e:
    suite.evaluate(samples_dir=folders["generated"], **corpus, output_dir=str(tmp_path),
                   probe_token_cache_dir=str(tmp_path), probe_max_train_clips=0)
  assert "probe_max_train_clips 0: give 1 or more" in _one_line(e)


def test_judge_input_errors_are_one_line(corpus, reference, monkeypatch, tmp_path):
  unlabelled = clip_sets.Reference(reference.audio, reference.sample_rate_hz, reference.texts, None, None)
  monkeypatch.setattr(clip_sets, "read_reference", lambda *args, **kwargs: unlabelled)
  with pytest.raises(UserError) as e:
    clip_sets.read_judge_split(**corpus)
  assert "no genre/instruments/mood labels to train the label judge on" in _one_line(e)
  with pytest.raises(UserError) as e:
    label_judge.LabelJudge.load(str(tmp_path / "judge"))
  assert "no label judge" in _one_line(e)


def _run_eval(*args):
  return run_binary("musiclm_jax.evaluate", "--gin_file=runs/eval.gin", *args)


def test_binary_writes_json_and_html_and_errors_in_one_line(corpus, folders, tmp_path):
  out = tmp_path / "eval"
  result = _run_eval(f"--gin.SAMPLES_DIR='{folders['generated']}'",
                     f"--gin.DATASET='{corpus['dataset']}'", f"--gin.DATA_DIR='{corpus['data_dir']}'",
                     f"--gin.SPLIT='{SPLIT}'", f"--gin.OUTPUT_DIR='{out}'",
                     f"--gin.UNCONDITIONAL_DIR='{folders['unconditional']}'",
                     f"--gin.TAGGERS=('{TAGGER}',)", f"--gin.JUDGE_SPLIT='{SPLIT}'")
  assert result.returncode == 0, result.stderr[-3000:]
  written = json.loads((out / "eval.json").read_text())
  assert written["inputs"]["split"] == SPLIT
  assert set(written["metrics"]["FAD_musicnn"]["values"]) == {"generated", "shuffled",
                                                             "unconditional", "real", "noise"}
  assert "judge_genre_accuracy" in written["metrics"] and "MCC" not in written["p_values"]
  assert (out / "judge.npz").is_file() and (out / "judge.json").is_file()
  assert "training accuracy" in written["notes"]["label judge"]  # JUDGE_SPLIT is SPLIT here
  assert "MEMORIZATION_SEMANTIC_EXPORT_DIR" in written["unavailable"]["memorization"]
  assert "PROBE_TOKEN_CACHE_DIR" in written["unavailable"]["token_probes"]
  # Lines 1-3 had their own clip as melody: each clip is scored against itself and the next
  # one's tune, as eval/melody.py scores them called directly (tested alone).
  clips = clip_sets.read_infer_folder(folders["generated"])[0][:3]
  assert written["melody_adherence"] == melody.melody_adherence(clips, clips, RATE_HZ,
                                                               pitch_model.BasicPitch())
  # A clip with no voiced frame has no tune to follow.
  voiced = [np.isfinite(pitch.pitch_contour(clip, RATE_HZ)[0]).any() for clip in clips]
  assert [v > 0 for v in written["melody_adherence"]["matched_per_pair"]] == voiced
  assert "melody adherence" in result.stdout and "Melody adherence" in (out / "eval.html").read_text()
  # 2 s clips: one musicnn window each, so a drift of 0 and no steps (eval/coherence.py is tested alone).
  assert written["coherence"]["generated"] == {"2": {
      "clips": 6, "position_s": [0.0], "drift": [pytest.approx(0.0, abs=1e-9)], "mean_step": None,
      "largest_step_ratio": None, "self_similarity": None}}
  assert set(written["coherence"]) == {"generated", "real", "noise"}
  page = (out / "eval.html").read_text()
  assert "data:image/png;base64," in page and "shuffled prompts" in page
  assert "Coherence against length" in page and "True vs shuffled prompts" in page
  assert "The judge's genres" in page
  assert "FAD_musicnn" in result.stdout
  # The generated clips are the real ones (as PCM16) with WINDOWS' joins, so the real clips at
  # the same joins score alike: 1.2 s (semantic); 0.8, 1.2 s (coarse); 0.5 to 1.46 s (fine).
  assert list(written["joins"]) == ["semantic", "coarse", "fine"]
  for stage, joins_per_clip in (("semantic", 1), ("coarse", 2), ("fine", 5)):
    generated, real = written["joins"][stage]["generated"], written["joins"][stage]["real"]
    # The generated set's 6 text lines and 3 melody lines (their clips again), the real 6 clips.
    assert (generated["joins"], real["joins"]) == (9 * joins_per_clip, 6 * joins_per_clip), (
        stage, generated, real)
    assert generated["ratio"] == pytest.approx(real["ratio"], rel=0.1), (stage, generated, real)
    assert 0 < generated["p_value"] <= 1
  assert "window joins" in result.stdout and "Window joins" in page
  assert written["unavailable"]["story"] == story.NO_STORIES  # its story line has no samples

  failed = _run_eval(f"--gin.SAMPLES_DIR='{tmp_path}'", f"--gin.DATASET='{corpus['dataset']}'",
                     f"--gin.DATA_DIR='{corpus['data_dir']}'", f"--gin.SPLIT='{SPLIT}'")
  assert failed.returncode == 2, failed.stderr[-2000:]
  assert "Traceback" not in failed.stderr
  assert failed.stderr.strip().splitlines()[-1].startswith("error: no results.jsonl")


def test_mood_class_is_the_word_group_a_caption_drew_from():
  # Captions name two of a (tempo class, mode) group's three words: both pairs are one class.
  assert clip_sets.mood_class(["melancholic", "sad"]) == clip_sets.mood_class(["somber", "sad"])
  assert clip_sets.mood_class(["sad", "somber"]) != clip_sets.mood_class(["calm", "tender"])
  assert clip_sets.mood_class(["eerie"]) == "eerie"  # words of no group stay their own class


def test_listening_page_pairs_each_line_with_its_captions_real_clip(corpus, reference, folders,
                                                                     tmp_path):
  """benchmarks/listening_page.py: the generated clips here are the reference clips, so each
  line's two Vorbis files decode to the same audio; prompts that are no caption pair nothing."""
  import soundfile  # pylint: disable=g-import-not-at-top

  def run(infer_dir, output_dir):
    return subprocess.run([sys.executable, "benchmarks/listening_page.py", f"--infer_dir={infer_dir}",
                           f"--data_dir={corpus['data_dir']}", f"--dataset={corpus['dataset']}",
                           f"--split={SPLIT}", f"--output_dir={output_dir}", "--lines=2"],
                          capture_output=True, text=True, env=binary_env(), timeout=300,
                          cwd=pathlib.Path(__file__).parents[1])

  out = tmp_path / "page"
  result = run(folders["generated"], out)
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.splitlines()[-1])["lines"] == 2
  page = (out / "index.html").read_text()
  for line, text in enumerate(reference.texts[:2], start=1):
    assert html.escape(text) in page
    generated, rate = soundfile.read(out / f"line{line}_generated.ogg")
    real, _ = soundfile.read(out / f"line{line}_real.ogg")
    assert rate == RATE_HZ and len(generated) == len(real) == len(reference.audio[line - 1])
    assert np.corrcoef(generated, real)[0, 1] > 0.99
    assert np.corrcoef(generated, reference.audio[line - 1])[0, 1] > 0.9
    assert (out / f"line{line}_real.png").is_file()
  assert "line3_generated.ogg" not in page
  uncaptioned = write_infer_folder(tmp_path / "uncaptioned", ["no caption", "nor this"],
                                   reference.audio[:2])
  result = run(uncaptioned, tmp_path / "none")
  assert result.returncode != 0 and "prompts a caption" in result.stderr.strip().splitlines()[-1]
