"""The label judge: its heads are sklearn's logistic regressions, it learns separable labels, it round-trips."""
import numpy as np
import pytest
from sklearn import linear_model
from sklearn import metrics

from musiclm_jax.errors import UserError
from musiclm_jax.eval import label_judge

GENRES = ("rock", "jazz", "folk")
MOODS = ("calm", "intense")
TAGS = ("piano", "drums", "violin")


def _clips(n, seed):
  """Features [n, 8] whose first dimensions encode genre, mood and tags, plus noise; and the labels."""
  rng = np.random.default_rng(seed)
  genre, mood = rng.integers(len(GENRES), size=n), rng.integers(len(MOODS), size=n)
  tags = rng.uniform(size=(n, len(TAGS))) < 0.5
  features = rng.normal(scale=0.3, size=(n, 8))
  features[np.arange(n), genre] += 2.0
  features[:, 3] += 2.0 * mood
  features[:, 4:7] += 2.0 * tags
  return (features, [GENRES[g] for g in genre], [[t for t, on in zip(TAGS, row) if on] for row in tags],
          [MOODS[m] for m in mood])


def test_heads_match_sklearn_logistic_regression():
  features, genres, instruments, moods = _clips(60, seed=0)
  judge = label_judge.fit(features, genres, instruments, moods, c=0.5)
  x = (features - features.mean(axis=0)) / features.std(axis=0)
  probabilities = judge.probabilities(features)
  reference = linear_model.LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, genres)
  assert list(reference.classes_) == judge.classes["genre"]
  np.testing.assert_allclose(probabilities["genre"], reference.predict_proba(x), atol=1e-4)
  for k, tag in enumerate(judge.classes["instruments"]):
    present = [tag in tags for tags in instruments]
    binary = linear_model.LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, present)
    np.testing.assert_allclose(probabilities["instruments"][:, k], binary.predict_proba(x)[:, 1],
                               atol=1e-4)


def test_learns_separable_labels_and_f1_is_sklearns_samples_f1():
  judge = label_judge.fit(*_clips(80, seed=1))
  features, genres, instruments, moods = _clips(40, seed=2)
  scores = label_judge.clip_scores(judge, features, genres, instruments, moods)
  assert scores["genre_correct"].mean() > 0.9 and scores["mood_correct"].mean() > 0.9
  assert scores["instrument_f1"].mean() > 0.9
  # Wrong labels score badly: the metric can fail.
  wrong = label_judge.clip_scores(judge, features, genres[1:] + genres[:1], instruments[::-1], moods[::-1])
  assert wrong["genre_correct"].mean() < 0.6 and wrong["instrument_f1"].mean() < 0.8

  predicted = judge.probabilities(features)["instruments"] >= label_judge.TAG_THRESHOLD
  labelled = np.asarray([[t in tags for t in judge.classes["instruments"]] for tags in instruments])
  assert scores["instrument_f1"].mean() == pytest.approx(
      metrics.f1_score(labelled, predicted, average="samples", zero_division=1.0))


def test_save_load_round_trip_and_untrainable_labels(tmp_path):
  features, genres, instruments, moods = _clips(30, seed=3)
  # "bass" is in every clip: nothing to learn, so it is not one of the judge's tags.
  judge = label_judge.fit(features, genres, [tags + ["bass"] for tags in instruments], moods)
  assert "bass" not in judge.classes["instruments"]
  judge.save(str(tmp_path / "judge"))
  loaded = label_judge.LabelJudge.load(str(tmp_path / "judge"))
  assert loaded.classes == judge.classes and loaded.feature_name == judge.feature_name
  for head, p in judge.probabilities(features).items():
    np.testing.assert_array_equal(loaded.probabilities(features)[head], p)

  with pytest.raises(UserError, match="one genre"):
    label_judge.fit(features, ["rock"] * 30, instruments, moods)
  with pytest.raises(UserError, match="29 genre labels"):
    label_judge.fit(features, genres[1:], instruments, moods)
  with pytest.raises(UserError, match="train one with JUDGE_SPLIT"):
    label_judge.LabelJudge.load(str(tmp_path / "missing"))


def test_genre_confusion_is_sklearns_confusion_matrix():
  judge = label_judge.fit(*_clips(80, seed=1))
  features, genres, _, _ = _clips(40, seed=5)
  shifted = genres[1:] + genres[:1]  # labels the judge mostly gets wrong: off-diagonal counts
  confusion = label_judge.genre_confusion(judge, np.concatenate([features, features[:1]]),
                                         shifted + ["polka"])
  predicted = [judge.classes["genre"][k] for k in judge.probabilities(features)["genre"].argmax(axis=1)]
  assert confusion["classes"] == judge.classes["genre"]
  # "polka" is no class of the judge's: its clip is not counted.
  np.testing.assert_array_equal(confusion["counts"], metrics.confusion_matrix(
      shifted, predicted, labels=judge.classes["genre"]))
  assert np.trace(confusion["counts"]) < 0.6 * 40


def test_train_fits_the_taggers_mean_penultimate_layer():
  features, genres, instruments, moods = _clips(30, seed=4)

  class Tagger:  # clip i's penultimate rows average to features[i]
    model_name = "fake_tagger"

    def __call__(self, audio, sample_rate_hz):
      assert sample_rate_hz == 16_000
      row = features[int(audio[0])]
      return {"penultimate": np.stack([row - 1.0, row + 1.0])}

  judge = label_judge.train(Tagger(), [np.full(4, i, np.float32) for i in range(30)], 16_000, genres,
                            instruments, moods)
  expected = label_judge.fit(features, genres, instruments, moods, feature_name="fake_tagger")
  assert judge.feature_name == "fake_tagger" and judge.classes == expected.classes
  for head, p in expected.probabilities(features).items():
    np.testing.assert_allclose(judge.probabilities(features)[head], p, atol=1e-6)


def test_constant_features_get_zero_weights_and_change_nothing():
  features, genres, instruments, moods = _clips(40, seed=5)
  padded = np.concatenate([np.zeros((40, 3)), features, np.full((40, 2), 0.25)], axis=1)
  judge = label_judge.fit(features, genres, instruments, moods)
  padded_judge = label_judge.fit(padded, genres, instruments, moods)
  for head in label_judge.HEADS:
    np.testing.assert_array_equal(padded_judge.weights[head][[0, 1, 2, 11, 12]], 0.0)
    np.testing.assert_allclose(padded_judge.weights[head][3:11], judge.weights[head], atol=1e-6)
  held_out = _clips(10, seed=6)[0]
  padded_held_out = np.concatenate([np.ones((10, 3)), held_out, np.zeros((10, 2))], axis=1)
  for head, p in padded_judge.probabilities(padded_held_out).items():
    np.testing.assert_allclose(p, judge.probabilities(held_out)[head], atol=1e-6)
