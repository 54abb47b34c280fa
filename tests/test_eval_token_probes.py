"""Token probes: a representation that carries a label by construction probes near 1 with a
small p, one that carries nothing probes at the baseline; generated tokens are scored against
their prompt's clip and a shuffled prompt's."""
import json

import numpy as np
import pytest

from musiclm_jax import results_file
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import report as report_lib
from musiclm_jax.eval import token_probes

GENRES = ("rock", "jazz", "folk")
MOODS = (("calm", "peaceful"), ("intense", "dark"))
TAGS = ("piano", "drums", "violin")
FRAMES = 20  # semantic frames; acoustic frames are twice as many


def _records(n: int, seed: int, prefix: str) -> list[token_cache.Record]:
  """Clips whose semantic tokens carry the genre (a genre's own 10 codes), M_T the mood (its first
  6 levels), coarse tokens the instruments (codes 100 + tag), and M_A and fine tokens nothing."""
  rng = np.random.default_rng(seed)
  records = []
  for i in range(n):
    genre, mood = rng.integers(len(GENRES)), rng.integers(len(MOODS))
    tags = rng.uniform(size=len(TAGS)) < 0.5
    semantic = 10 * genre + rng.integers(10, size=FRAMES)
    mulan_text = rng.integers(50, size=token_layout.MULAN.num_levels)
    mulan_text[:6] = mood
    acoustic = rng.integers(20, size=(2 * FRAMES, 12))
    present = [100 + k for k in np.flatnonzero(tags)]
    acoustic[:, :4] = rng.choice(present or [0], size=(2 * FRAMES, 4))
    records.append(token_cache.Record(
        clip_id=f"{prefix}{i}", mulan=rng.integers(50, size=12), semantic=semantic,
        acoustic=acoustic, num_samples=FRAMES * 960, caption=f"{prefix} caption {i}",
        labels={"genre": GENRES[genre], "mood": list(MOODS[mood]),
                "instruments": [t for t, on in zip(TAGS, tags) if on]},
        mulan_text=mulan_text))
  return records


@pytest.fixture(scope="module")
def data():
  train, held_out = _records(80, 0, "train"), _records(30, 1, "held-out")
  return train, held_out, token_probes.fit_probes(train)


def test_bag_of_tokens_is_a_histogram_per_level():
  codes = np.array([[3, 0, 5, 1023], [3, 2, 5, 0]])
  bag = token_probes.bag_of_tokens(codes, "coarse")
  expected = np.zeros(4 * 1024)
  for level in range(4):
    for code in codes[:, level]:
      expected[level * 1024 + code] += 0.5
  np.testing.assert_array_equal(bag, expected)
  with pytest.raises(UserError, match=r"outside \[0, 1024\)"):
    token_probes.bag_of_tokens(np.array([[1024]]), "semantic")
  with pytest.raises(UserError, match="expected"):
    token_probes.bag_of_tokens(np.zeros((3, 2), int), "coarse")


def test_record_codes_split_the_acoustic_levels_where_the_stages_do():
  record = _records(1, 2, "x")[0]
  codes = token_probes.record_codes(record)
  assert set(codes) == set(token_probes.REPRESENTATIONS)
  assert codes["coarse"].shape == (2 * FRAMES, token_layout.COARSE.num_levels)
  assert codes["fine"].shape == (2 * FRAMES, token_layout.FINE.num_levels)
  np.testing.assert_array_equal(np.concatenate([codes["coarse"], codes["fine"]], 1), record.acoustic)
  assert codes["M_T"].shape == (1, 12) and codes["semantic"].shape == (FRAMES, 1)
  record.mulan_text = np.zeros([0], np.int32)
  assert "M_T" not in token_probes.record_codes(record)
  # A cascade that decodes no fine level samples the coarse levels only.
  acoustic = record.acoustic
  record.acoustic = acoustic[:, :token_layout.COARSE.num_levels]
  coarse_only = token_probes.record_codes(record)
  assert "fine" not in coarse_only
  np.testing.assert_array_equal(coarse_only["coarse"], codes["coarse"])
  record.acoustic = acoustic[:, :8]
  with pytest.raises(UserError, match="acoustic tokens of shape"):
    token_probes.record_codes(record)


def test_read_records_takes_at_most_max_records_evenly_spaced(tmp_path):
  cache = str(tmp_path)
  records = _records(10, 4, "train")
  token_cache.write_shard(token_cache.shard_path(cache, "train", 0, 1), records, {})
  token_cache.write_metadata(cache, {}, {"train": {"num_shards": 1}})
  ids = lambda rs: [r.clip_id for r in rs]
  assert ids(token_probes.read_records(cache, "train")) == ids(records)
  assert ids(token_probes.read_records(cache, "train", 10)) == ids(records)
  assert ids(token_probes.read_records(cache, "train", 4)) == ["train0", "train2", "train5",
                                                                "train7"]
  with pytest.raises(UserError, match="no 'validation' records"):
    token_probes.read_records(cache, "validation")


def test_labels_are_the_judges_and_unlabelled_records_are_refused():
  records = _records(2, 3, "x")
  labels = token_probes.record_labels(records)
  assert labels["mood"] == [clip_sets.mood_class(r.labels["mood"]) for r in records]
  assert labels["instruments"][0] == tuple(records[0].labels["instruments"])
  records[1].labels = {}
  with pytest.raises(UserError, match="no genre/instruments/mood labels"):
    token_probes.record_labels(records)


def test_what_a_representation_carries_probes_high_and_noise_at_the_baseline(data):
  train, held_out, probes = data
  rows = {row["representation"]: row for row in token_probes.probe_real(probes, train, held_out)}
  assert list(rows) == list(token_probes.REPRESENTATIONS)
  carried = {"semantic": "genre", "M_T": "mood", "coarse": "instruments"}
  for representation, head in carried.items():
    figures = rows[representation][head]
    assert figures["score"] > 0.9 and figures["p_value"] < 0.01, (representation, figures)
    assert figures["shuffled_labels"] < 0.7
  for representation in ("M_A", "fine"):
    for head in ("genre", "mood"):
      figures = rows[representation][head]
      assert figures["score"] < figures["baseline"] + 0.2 and figures["p_value"] > 0.05, (
          representation, head, figures)
  # The majority baseline, counted independently.
  train_genres = [r.labels["genre"] for r in train]
  majority = max(GENRES, key=train_genres.count)
  assert rows["fine"]["genre"]["baseline"] == pytest.approx(
      np.mean([r.labels["genre"] == majority for r in held_out]))
  assert rows["semantic"]["clips"] == 30 and rows["semantic"]["features"] == 1024


def test_pairwise_scores_diagonal_is_the_judges_clip_scores(data):
  _, held_out, probes = data
  clips = [token_probes.record_codes(r) for r in held_out]
  labels = token_probes.record_labels(held_out)
  x = token_probes.features(clips, "coarse")
  scores = token_probes.pairwise_scores(probes["coarse"], x, labels)
  reference = label_judge.clip_scores(probes["coarse"], x, *[labels[h] for h in label_judge.HEADS])
  for head, (_, key) in token_probes.METRICS.items():
    assert scores[head].shape == (30, 30)
    np.testing.assert_allclose(np.diag(scores[head]), reference[key])


def _generated(held_out, codes_of):
  """(prompt per clip, codes per clip): two samples for each held-out caption, and a prompt
  that is no caption."""
  texts, clips = [], []
  for record in held_out:
    for _ in range(2):
      texts.append(record.caption)
      clips.append(codes_of(record))
  texts.append("a prompt of no clip")
  clips.append(codes_of(held_out[0]))
  return texts, clips


def test_generated_tokens_follow_their_prompt_or_not(data):
  train, held_out, probes = data
  faithful = _generated(held_out, token_probes.record_codes)
  rows = {r["representation"]: r for r in token_probes.probe_generated(probes, train, held_out,
                                                                      *faithful)}
  assert list(rows) == list(token_probes.GENERATED_REPRESENTATIONS)
  semantic = rows["semantic"]
  assert semantic["clips"] == 60 and semantic["prompts"] == 30 and semantic["unpaired_clips"] == 1
  assert semantic["genre"]["score"] > 0.9 and semantic["genre"]["p_value"] < 0.01
  assert semantic["genre"]["shuffled_prompts"] < 0.7
  assert rows["M_T"]["mood"]["score"] > 0.9 and rows["M_T"]["mood"]["p_value"] < 0.01
  # Music that ignores its prompt: every clip's tokens are one clip's.
  deaf = _generated(held_out, lambda record: token_probes.record_codes(held_out[0]))
  rows = {r["representation"]: r for r in token_probes.probe_generated(probes, train, held_out,
                                                                      *deaf)}
  for head in ("genre", "mood"):
    assert rows["semantic"][head]["p_value"] > 0.05 and rows["M_T"][head]["p_value"] > 0.05
  # Clips with only some representations (a semantic stage sampled alone) get those rows only.
  partial = [{name: codes[name] for name in ("M_T", "semantic")} for codes in faithful[1]]
  rows = token_probes.probe_generated(probes, train, held_out, faithful[0], partial)
  assert [r["representation"] for r in rows] == ["M_T", "semantic"]
  with pytest.raises(UserError, match="needs 2 captions"):
    token_probes.probe_generated(probes, train, held_out, ["nobody's caption"] * 2, faithful[1][:2])


def test_read_generated_reads_the_tokens_infer_saved(tmp_path, data):
  _, held_out, _ = data
  records = [{"line": 1, "text": held_out[0].caption,
              "samples": [{"wav": "audio/a.wav", "tokens": "audio/a.npz"},
                          {"wav": "audio/b.wav"}]},
             {"line": 2, "story": [["x", 1.0]], "samples": [{"wav": "audio/c.wav", "tokens": "c"}]},
             {"line": 3, "prompt": "bad", "error": "boom"}]
  (tmp_path / "audio").mkdir()
  (tmp_path / results_file.NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
  record = held_out[0]
  with open(tmp_path / "audio" / "a.npz", "wb") as f:
    results_file.write_tokens(f, record.mulan_text[None], record.semantic, record.acoustic)
  texts, clips = token_probes.read_generated(str(tmp_path))
  assert texts == [record.caption]
  for name, codes in token_probes.record_codes(record).items():
    if name != "M_A":
      np.testing.assert_array_equal(clips[0][name], codes)
  assert "M_A" not in clips[0]
  (tmp_path / "audio" / "a.npz").unlink()
  with pytest.raises(UserError, match="is missing"):
    token_probes.read_generated(str(tmp_path))
  records[0]["samples"].pop(0)
  (tmp_path / results_file.NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
  assert token_probes.read_generated(str(tmp_path)) == ([], [])


def test_the_eval_report_prints_and_renders_the_probes(tmp_path, data):
  train, held_out, probes = data
  rows = token_probes.probe_real(probes, train, held_out) + token_probes.probe_generated(
      probes, train, held_out, *_generated(held_out, token_probes.record_codes))
  report = {"sets": {"generated": {"title": "generated", "clips": 61, "paired_clips": 60}},
            "metrics": {}, "unavailable": {}, "sets_not_given": {}, "notes": {}, "fad_curves": {},
            "coherence": {},
            "token_probes": rows}
  text = report_lib.headline(report)
  semantic = rows[2]["genre"]
  assert (f"semantic real (30 clips): genre_accuracy {semantic['score']:.2f} (majority "
          f"{semantic['baseline']:.2f}, p ") in text
  assert "semantic generated (60 clips): genre_accuracy" in text and "shuffled prompts" in text
  page = open(report_lib.write_html(str(tmp_path / "eval.html"), report)).read()
  assert "<h2>Token probes</h2>" in page and page.count("<td>generated</td>") == 4
