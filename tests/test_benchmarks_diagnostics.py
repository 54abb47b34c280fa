"""The issue #15 diagnostics: count-table information per acoustic level, the prefix gap, the
conditioning gap and coarse tokens sampled given the real past."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from musiclm_jax import cascade
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax import results_file
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import teacher_forcing
from musiclm_jax.eval import token_information
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from conftest import REPO_DIR, binary_env
from numpy_params import model_params
from test_tasks import write_cache
import fake_tokenizers
import test_cascade

CODES = 16
TINY = transformer.TransformerConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)
CROP_SECONDS = 0.2  # 5 semantic, 10 acoustic frames


def _synthetic_clips(num_clips: int, seed: int) -> tuple[list, list]:
  """Clips of 40 frames: level 1 uniform, level 2 == level 1, level 3 independent of both."""
  rng = np.random.default_rng(seed)
  acoustic, semantic = [], []
  for _ in range(num_clips):
    first, independent = rng.integers(0, CODES, size=(2, 40))
    acoustic.append(np.stack([first, first, independent], axis=1))
    semantic.append(rng.integers(0, CODES, size=20))
  return acoustic, semantic


def test_token_information_finds_a_copied_level_and_no_more():
  rows = token_information.level_information(*_synthetic_clips(60, 0), *_synthetic_clips(20, 1),
                                             acoustic_codes=CODES, semantic_codes=CODES)
  unigram = [row["unigram"]["ce"] for row in rows]
  np.testing.assert_allclose(unigram, np.log(CODES), atol=0.05)  # uniform codes
  copied = rows[1]
  for name in ("level_1", "previous_level"):  # level 2's level 1 is also its level q - 1
    assert copied[name]["ce"] < 0.1 * unigram[1], name
    assert copied[name]["weight"] >= 0.9, name
  independent = rows[2]
  for name in ("level_1", "previous_level", "previous_frame", "semantic"):
    assert abs(independent[name]["ce"] - unigram[2]) < 0.02, name
  assert rows[0]["level_1"] is None and rows[0]["previous_level"] is None


def test_table_information_of_a_target_its_context_names_and_of_one_it_does_not():
  # Pitch classes (12) given a token of 16 codes: code % 12 names the class, or tells nothing.
  rng = np.random.default_rng(0)
  contexts = [rng.integers(0, CODES, 50) for _ in range(40)]
  named = [c % 12 for c in contexts]
  unrelated = [rng.integers(0, 12, 50) for _ in range(40)]
  prior = token_information.unigram_information(unrelated[:30], unrelated[30:], 12)
  counts = np.bincount(np.concatenate(unrelated[:30]), minlength=12) + 1.0  # add-one, by hand
  held_out = np.concatenate(unrelated[30:])
  assert prior == {"ce": pytest.approx(-np.log(counts[held_out] / counts.sum()).mean()),
                   "weight": 0.0}
  told = token_information.table_information(contexts[:30], named[:30], contexts[30:],
                                             named[30:], CODES, 12)
  assert told["ce"] < 0.1 and told["weight"] >= 0.9
  untold = token_information.table_information(contexts[:30], unrelated[:30], contexts[30:],
                                               unrelated[30:], CODES, 12)
  assert abs(untold["ce"] - prior["ce"]) < 0.02
  with pytest.raises(UserError, match="need 2 train clips"):
    token_information.table_information(contexts[:1], named[:1], contexts[30:], named[30:],
                                        CODES, 12)


def test_token_information_previous_frame_stays_within_a_clip():
  acoustic = np.arange(12).reshape(6, 2) % CODES
  contexts = token_information.clip_contexts(acoustic, np.arange(3), 1, CODES)
  np.testing.assert_array_equal(contexts["previous_frame"], [CODES, 1, 3, 5, 7, 9])
  np.testing.assert_array_equal(contexts["semantic"], [0, 0, 1, 1, 2, 2])
  # A level that steps down one code a frame is predicted from its previous frame.
  clips = [np.repeat(np.arange(CODES)[:, None], 2, axis=1)[::-1] for _ in range(40)]
  rows = token_information.level_information(
      clips[:30], [np.zeros(8, int)] * 30, clips[30:], [np.zeros(8, int)] * 10,
      acoustic_codes=CODES, semantic_codes=CODES)
  assert rows[0]["previous_frame"]["ce"] < 0.2 < rows[0]["unigram"]["ce"]


def test_token_information_scores_generated_copies_of_held_out_clips_as_the_split(tmp_path):
  """benchmarks/token_information.py --generated_dir reads a musiclm-infer folder's tokens:
  copies of the held-out split's clips, saved as infer saves them, score as that split."""
  held_out = [r for r in write_cache(tmp_path / "cache", seed=3).values() if "validation" in r.clip_id]
  samples = tmp_path / "samples"
  (samples / "audio").mkdir(parents=True)
  lines = []
  for i, record in enumerate(held_out):
    results_file.write_tokens(samples / "audio" / f"{i}.npz", record.mulan_text[None],
                              record.semantic, record.acoustic)
    lines.append({"line": i + 1, "text": record.caption,
                  "samples": [{"wav": f"audio/{i}.wav", "tokens": f"audio/{i}.npz"}]})
  (samples / results_file.NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))

  def run(*flags):
    out = subprocess.run([sys.executable, "benchmarks/token_information.py",
                          f"--token_cache_dir={tmp_path / 'cache'}", *flags], cwd=REPO_DIR,
                         env=binary_env(), capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[0])

  split, generated = run(), run(f"--generated_dir={samples}")
  assert generated["held_out_clips"] == len(held_out) == split["held_out_clips"]
  assert generated["levels"] == split["levels"] and len(split["levels"]) == 12


def _record(index: int, coarse_seed: int, frames: int = 20) -> token_cache.Record:
  """A 0.4 s clip: coarse levels drawn from coarse_seed, fine levels and S from the index."""
  rng = np.random.default_rng(100 + index)
  coarse = np.random.default_rng(coarse_seed).integers(
      0, token_layout.COARSE.codebook_size, (frames, token_layout.COARSE.num_levels))
  fine = rng.integers(0, token_layout.FINE.codebook_size, (frames, token_layout.FINE.num_levels))
  return token_cache.Record(
      clip_id=f"clip{index}", mulan=rng.integers(0, token_layout.MULAN.codebook_size,
                                                 token_layout.MULAN.num_levels),
      semantic=rng.integers(0, token_layout.SEMANTIC.codebook_size, frames // 2),
      acoustic=np.concatenate([coarse, fine], axis=1).astype(np.int32), num_samples=frames * 480)


@pytest.mark.parametrize("stage_name", ["coarse", "fine"])
def test_rolled_row_differs_from_own_in_the_prefix_only(stage_name):
  stage = musiclm_spec.STAGE_CONFIGS[stage_name]
  records = [_record(0, coarse_seed=0), _record(1, coarse_seed=1)]
  frames = tasks.crop_frames(stage_name, CROP_SECONDS)
  kind = teacher_forcing.prefix_kind(stage)
  own, rolled = teacher_forcing.prefix_rows(stage, kind, frames, *records, seed=[0, 0])
  # The next clip's own crop from the same generator holds the prefix tokens rolled reads.
  next_own, _ = teacher_forcing.prefix_rows(stage, kind, frames, records[1], records[0],
                                            seed=[0, 0])
  prefix = np.asarray(stage.layout.contains(kind, own))
  assert own.shape == rolled.shape and prefix.any() and not prefix.all()
  np.testing.assert_array_equal(rolled[~prefix], own[~prefix])  # conditioning and targets
  np.testing.assert_array_equal(rolled[prefix], next_own[prefix])
  assert (rolled[prefix] != own[prefix]).mean() > 0.9


def test_prefix_gap_of_a_tiny_fine_stage():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.fine_stage())
  stage_lm = cascade.StageLM(model, model_params(model))
  # Clips 0 and 1 share their coarse levels: rolling clip 0 changes nothing.
  records = [_record(0, coarse_seed=0), _record(1, coarse_seed=0), _record(2, coarse_seed=2)]
  result = teacher_forcing.prefix_gap(stage_lm, records, CROP_SECONDS, seed=0)
  own, rolled = result["per_clip"]["own"], result["per_clip"]["rolled"]
  assert result["prefix"] == "coarse" and result["clips"] == 3
  assert abs(rolled[0] - own[0]) < 1e-4
  assert abs(rolled[1] - own[1]) > 1e-3 and abs(rolled[2] - own[2]) > 1e-3
  assert result["gap_rolled_minus_own"] == pytest.approx(np.mean(np.subtract(rolled, own)),
                                                         abs=1e-4)
  assert 0 < result["p_rolled_above_own"] <= 1


def test_prefix_gap_rejects_a_semantic_stage():
  with pytest.raises(UserError, match="reads no prefix"):
    teacher_forcing.prefix_kind(musiclm_spec.semantic_stage())


def _with_melody(record: token_cache.Record, seed: int) -> token_cache.Record:
  """The record with melody tokens [1, melody_levels] (one 3 s melody frame covers 0.4 s)."""
  melody = np.random.default_rng(seed).integers(
      0, token_layout.MELODY.codebook_size, (1, token_layout.MELODY.num_levels))
  return dataclasses.replace(record, melody=melody.astype(np.int32))


@pytest.mark.parametrize("stage_name, melody", [("semantic", None), ("coarse", None),
                                                ("semantic", "own"), ("semantic", "null")])
def test_conditioning_rows_differ_in_m_only(stage_name, melody):
  stage = (musiclm_spec.semantic_stage(melody=True) if melody
           else musiclm_spec.STAGE_CONFIGS[stage_name])
  model = lm.DecoderOnlyLM(TINY, stage)
  records = [_with_melody(_record(i, coarse_seed=i), seed=i) for i in range(2)]
  frames = tasks.crop_frames(stage_name, CROP_SECONDS)
  own, rolled, null = teacher_forcing.conditioning_rows(model, frames, *records, "mulan", melody,
                                                        seed=[0, 0])
  next_own = teacher_forcing.conditioning_rows(model, frames, records[1], records[0], "mulan",
                                               melody, seed=[0, 0])[0]
  is_m = np.asarray(stage.layout.contains("mulan", own))
  assert is_m.sum() == token_layout.MULAN.num_levels and own.shape == rolled.shape == null.shape
  for row in (rolled, null):  # the crop, the melody and the targets are the same
    np.testing.assert_array_equal(row[~is_m], own[~is_m])
  np.testing.assert_array_equal(rolled[is_m], next_own[is_m])  # the next clip's M
  assert (rolled[is_m] != own[is_m]).all()
  assert (null[is_m] == token_layout.NULL_ID).all() and (own[is_m] != token_layout.NULL_ID).all()
  if melody:  # the clip's melody tokens, or NULL_ID in their place
    with_melody = teacher_forcing.conditioning_rows(model, frames, *records, "mulan", "own",
                                                    seed=[0, 0])[0]
    is_melody = np.asarray(stage.layout.contains("melody", with_melody))
    assert is_melody.sum() == token_layout.MELODY.num_levels
    expected = token_layout.NULL_ID if melody == "null" else with_melody[is_melody]
    np.testing.assert_array_equal(own[is_melody], expected)
    np.testing.assert_array_equal(own[~is_melody], with_melody[~is_melody])


def test_conditioning_gap_of_a_tiny_semantic_stage():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage())
  stage_lm = cascade.StageLM(model, model_params(model))
  # Clips 0 and 1 share their M: rolling clip 0 changes nothing.
  records = [_record(0, coarse_seed=0), _record(1, coarse_seed=1), _record(2, coarse_seed=2)]
  records[1] = dataclasses.replace(records[1], mulan=records[0].mulan)
  result = teacher_forcing.conditioning_gap(stage_lm, records, "mulan", CROP_SECONDS,
                                            own_melody=False, seed=0)
  assert list(result) == ["stage", "swap", "melody", "crop_seconds", "condition_dropout_rate",
                          "clips",
                          "ce_own", "ce_rolled", "ce_null", "gap_rolled_minus_own",
                          "p_rolled_above_own", "gap_null_minus_own", "p_null_above_own",
                          "per_clip"]
  assert result["stage"] == "semantic" and result["melody"] is None and result["clips"] == 3
  per_clip = result["per_clip"]
  assert per_clip["clip_id"] == ["clip0", "clip1", "clip2"]
  own, rolled, null = (np.asarray(per_clip[row]) for row in ("own", "rolled", "null"))
  assert abs(rolled[0] - own[0]) < 1e-4
  assert abs(rolled[1] - own[1]) > 1e-3 and abs(rolled[2] - own[2]) > 1e-3
  assert (abs(null - own) > 1e-3).all()
  for row, values in (("own", own), ("rolled", rolled), ("null", null)):
    assert result[f"ce_{row}"] == pytest.approx(values.mean(), abs=1e-4)
  for row, values in (("rolled", rolled), ("null", null)):
    assert result[f"gap_{row}_minus_own"] == pytest.approx(np.mean(values - own), abs=1e-4)
    assert 0 < result[f"p_{row}_above_own"] <= 1


def _with_tune(record: token_cache.Record, seed: int) -> token_cache.Record:
  """The record with melody labels: a note of a random class every 40 ms of its 0.4 s."""
  starts = np.arange(10) * 0.04
  pitch = np.random.default_rng(seed).integers(48, 84, 10)
  return dataclasses.replace(record, labels={"melody": {
      "pitch": pitch.tolist(), "start_s": starts.tolist(), "end_s": (starts + 0.04).tolist()}})


@pytest.mark.parametrize("stage_name, melody", [("semantic", True), ("coarse", "pitch")])
def test_melody_rows_differ_in_the_melody_only(stage_name, melody):
  stage = {"semantic": musiclm_spec.semantic_stage,
           "coarse": musiclm_spec.coarse_stage}[stage_name](melody)
  model = lm.DecoderOnlyLM(TINY, stage)
  records = [_with_tune(_with_melody(_record(i, coarse_seed=i), seed=i), seed=i)
             for i in range(2)]
  frames = tasks.crop_frames(stage_name, CROP_SECONDS)
  kind = stage.melody_kind
  num_codes = (token_layout.MELODY.num_levels if kind == "melody"
               else 3)  # 5 semantic frames: 3 pitch frames
  own, rolled, null = teacher_forcing.conditioning_rows(model, frames, *records, "mulan", "own",
                                                        seed=[0, 0], swap="melody")
  next_own = teacher_forcing.conditioning_rows(model, frames, records[1], records[0], "mulan",
                                               "own", seed=[0, 0], swap="melody")[0]
  # The M swap's own row is the same crop: only the melody positions may differ from it.
  np.testing.assert_array_equal(own, teacher_forcing.conditioning_rows(
      model, frames, *records, "mulan", "own", seed=[0, 0])[0])
  is_melody = np.asarray(stage.layout.contains(kind, own))
  assert is_melody.sum() == num_codes
  for row in (rolled, null):  # the crop, M and the targets are the same
    np.testing.assert_array_equal(row[~is_melody], own[~is_melody])
  np.testing.assert_array_equal(rolled[is_melody], next_own[is_melody])  # the next clip's tune
  assert (rolled[is_melody] != own[is_melody]).any()
  assert (null[is_melody] == token_layout.NULL_ID).all()


def test_melody_gap_of_a_tiny_semantic_stage():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage(melody=True))
  stage_lm = cascade.StageLM(model, model_params(model))
  # Clips 0 and 1 share their melody tokens: rolling clip 0's changes nothing.
  records = [_with_melody(_record(i, coarse_seed=i), seed=i) for i in range(3)]
  records[1] = dataclasses.replace(records[1], melody=records[0].melody)
  result = teacher_forcing.conditioning_gap(stage_lm, records, "mulan", CROP_SECONDS,
                                            own_melody=False, seed=0, swap="melody")
  assert result["swap"] == "melody" and result["melody"] == "own" and result["clips"] == 3
  own, rolled, null = (np.asarray(result["per_clip"][row]) for row in ("own", "rolled", "null"))
  assert abs(rolled[0] - own[0]) < 1e-4
  assert abs(rolled[1] - own[1]) > 1e-3 and abs(rolled[2] - own[2]) > 1e-3
  assert (abs(null - own) > 1e-3).all()
  assert result["gap_rolled_minus_own"] == pytest.approx(np.mean(rolled - own), abs=1e-4)
  plain = lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage())
  with pytest.raises(UserError, match="reads no melody tokens"):
    teacher_forcing.conditioning_gap(cascade.StageLM(plain, None), records, "mulan",
                                     CROP_SECONDS, own_melody=False, seed=0, swap="melody")


def test_conditioning_gap_rejects_a_fine_stage():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.fine_stage())
  with pytest.raises(UserError, match="reads no MuLan tokens"):
    teacher_forcing.conditioning_gap(cascade.StageLM(model, None), [], "mulan", CROP_SECONDS,
                                     own_melody=False, seed=0)


@pytest.mark.parametrize("guidance_scale", [None, 3.0])
def test_greedy_draws_given_their_own_past_are_the_cascades_greedy_tokens(guidance_scale):
  """The cascade samples coarse windows greedily with its KV cache; given those tokens as the
  real past, each one-step draw of the full forward pass is the token the cascade drew."""
  greedy = decoding.SamplingConfig(temperature=0.0, guidance_scale=guidance_scale)
  musiclm = test_cascade.make_cascade(fake_tokenizers.FakeAcousticTokenizer(codebook_size=CODES))
  request = cascade.Request.from_text("calm piano", test_cascade.SECONDS, seed=5,
                                      sampling=(("coarse", greedy),))
  [generation] = musiclm.generate([request])
  record = token_cache.Record(
      clip_id="own", mulan=generation.mulan_text[0], semantic=generation.semantic,
      acoustic=generation.acoustic, num_samples=len(generation.audio),
      mulan_text=generation.mulan_text[0])
  coarse = generation.acoustic[:, :token_layout.COARSE.num_levels]
  assert len({c.start for c in generation.chunks if c.stage == "coarse"}) > 2  # windows join

  def draw(record):
    return teacher_forcing.sample_given_real_past(musiclm.stages["coarse"], record,
                                                  test_cascade.WINDOWS, greedy, seed=5,
                                                  num_codes=CODES)
  np.testing.assert_array_equal(draw(record), coarse)
  # Another past: the draws after the changed frame follow it, the ones before do not.
  changed = record.acoustic.copy()
  changed[10, :token_layout.COARSE.num_levels] = (coarse[10] + 1) % CODES
  other = draw(dataclasses.replace(record, acoustic=changed))
  np.testing.assert_array_equal(other[:10], coarse[:10])
  assert (other[11:] != coarse[11:]).any()
  # At temperature 1 many draws are other codes; each stays the real one at the real token rate.
  wide = dataclasses.replace(greedy, temperature=1.0)
  drawn, half, real = (teacher_forcing.sample_given_real_past(
      musiclm.stages["coarse"], record, test_cascade.WINDOWS, wide, seed=5, num_codes=CODES,
      real_token_rate=rate) for rate in (0.0, 0.5, 1.0))
  np.testing.assert_array_equal(real, coarse)
  assert (drawn == coarse).mean() < 0.7
  assert (half == coarse).mean() == pytest.approx(0.5 + 0.5 * (drawn == coarse).mean(), abs=0.15)


def test_sampling_given_real_past_rejects_a_fine_stage():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.fine_stage())
  with pytest.raises(UserError, match="measured on a coarse stage"):
    teacher_forcing.sample_given_real_past(cascade.StageLM(model, None), _record(0, 0),
                                           test_cascade.WINDOWS, decoding.SamplingConfig(), 0)
