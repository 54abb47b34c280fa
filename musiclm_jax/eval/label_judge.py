"""A judge of synth_music's labels that is not MuLan: logistic regressions on frozen musicnn features.

  judge = fit(features, genres, instruments, moods)    # features [clips, D], e.g. musicnn penultimate
  judge = train(tagger, audio, 24_000, genres, instruments, moods)  # fit on a tagger's features
  judge.save("judge")                                  # judge.npz (weights) + judge.json (classes)
  judge = LabelJudge.load("judge")
  scores = clip_scores(judge, features, genres, instruments, moods)   # per clip: 0/1, F1
  predicted = predict(judge, features)                 # per clip: genre, mood, instruments heard
  confusion = genre_confusion(judge, features, genres)  # labelled genre x predicted genre counts

Three heads over the same standardised features, each an L2-regularised
logistic regression fitted to its exact optimum (L-BFGS): genre and mood are
single-label (softmax), instruments multi-label (one sigmoid per tag). The
classes are the labels seen in the training split; an instrument tag is kept
only when training has clips with and clips without it (a tag always or never
present has nothing to learn). Trained on real training audio, its accuracy on
real held-out audio is the ceiling a generated clip can reach; on generated
clips it tells whether the music sounds like the genre, mood and instruments
its prompt asked for, by a model other than the one that conditioned it.
"""
import dataclasses
import json
from typing import Sequence

import numpy as np
from scipy import optimize
from scipy import special
import threadpoolctl
from tqdm import tqdm

from musiclm_jax.errors import UserError

HEADS = ("genre", "instruments", "mood")
# Inverse regularisation strength of every head (sklearn's C): the loss is
# C * sum of log-losses + |W|^2 / 2, the intercept unpenalised.
DEFAULT_C = 1.0
# An instrument counts as heard when its probability reaches this.
TAG_THRESHOLD = 0.5
# Standard deviations below this are features constant over the training clips.
_MIN_STD = 1e-8


@dataclasses.dataclass
class LabelJudge:
  """Feature standardisation (mean, std [D]) and per head its classes, weights [D, classes], bias [classes]."""
  feature_name: str
  mean: np.ndarray
  std: np.ndarray
  classes: dict[str, list[str]]
  weights: dict[str, np.ndarray]
  biases: dict[str, np.ndarray]

  def probabilities(self, features: np.ndarray) -> dict[str, np.ndarray]:
    """features [clips, D] -> per head [clips, classes]: softmax for genre and mood,
    independent sigmoids for instruments."""
    x = (np.asarray(features, np.float64) - self.mean) / self.std
    logits = {head: x @ self.weights[head] + self.biases[head] for head in HEADS}
    return {head: special.expit(z) if head == "instruments" else special.softmax(z, axis=-1)
            for head, z in logits.items()}

  def save(self, path_prefix: str) -> None:
    """Writes path_prefix.npz (arrays) and path_prefix.json (feature name and classes)."""
    np.savez(f"{path_prefix}.npz", mean=self.mean, std=self.std,
             **{f"{head}_weights": self.weights[head] for head in HEADS},
             **{f"{head}_bias": self.biases[head] for head in HEADS})
    with open(f"{path_prefix}.json", "w") as f:
      json.dump({"feature_name": self.feature_name, "classes": self.classes}, f, indent=1)

  @classmethod
  def load(cls, path_prefix: str) -> "LabelJudge":
    try:
      with open(f"{path_prefix}.json") as f:
        meta = json.load(f)
      arrays = np.load(f"{path_prefix}.npz")
    except FileNotFoundError as e:
      raise UserError(f"no label judge at {path_prefix} ({e.filename} is missing): train one with "
                      f"JUDGE_SPLIT, which saves it as OUTPUT_DIR/judge.npz and judge.json") from None
    return cls(meta["feature_name"], arrays["mean"], arrays["std"], meta["classes"],
               {head: arrays[f"{head}_weights"] for head in HEADS},
               {head: arrays[f"{head}_bias"] for head in HEADS})


def _fit_logistic(x: np.ndarray, targets: np.ndarray, multinomial: bool,
                  c: float) -> tuple[np.ndarray, np.ndarray]:
  """Weights [D, K] and bias [K] minimising C * log-loss + |W|^2 / 2.

  x [clips, D]; targets [clips, K]: one-hot rows (multinomial: one softmax) or
  0/1 columns (K independent binary problems, whose sum is minimised at once).
  """
  dims, classes = x.shape[1], targets.shape[1]

  def loss_and_gradient(theta):
    weights, bias = theta[:dims * classes].reshape(dims, classes), theta[dims * classes:]
    logits = x @ weights + bias
    if multinomial:
      log_p = logits - special.logsumexp(logits, axis=1, keepdims=True)
      loss = -np.sum(targets * log_p)
      residual = np.exp(log_p) - targets
    else:
      loss = np.sum(np.logaddexp(0.0, logits) - targets * logits)
      residual = special.expit(logits) - targets
    loss = c * loss + 0.5 * np.sum(weights ** 2)
    gradient = np.concatenate([(c * x.T @ residual + weights).ravel(), c * residual.sum(axis=0)])
    return loss, gradient

  # L-BFGS takes hundreds of steps on vectors of a few thousand numbers: multithreaded BLAS
  # spends more on waking its threads than on the work, on a shared machine 100 times more.
  with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
    result = optimize.minimize(loss_and_gradient, np.zeros(dims * classes + classes), jac=True,
                               method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-9})
  return result.x[:dims * classes].reshape(dims, classes), result.x[dims * classes:]


def _check_rows(features: np.ndarray, labels: dict[str, Sequence]) -> None:
  for head, values in labels.items():
    if len(values) != len(features):
      raise UserError(f"{len(features)} feature rows but {len(values)} {head} labels: "
                      f"give one label per clip")


def fit(features: np.ndarray, genres: Sequence[str], instruments: Sequence[Sequence[str]],
        moods: Sequence[str], feature_name: str = "MTT_musicnn penultimate",
        c: float = DEFAULT_C) -> LabelJudge:
  """Fits the three heads on training clips: features [clips, D] and their labels."""
  features = np.asarray(features, np.float64)
  _check_rows(features, {"genre": genres, "instruments": instruments, "mood": moods})
  mean, std = features.mean(axis=0), features.std(axis=0)
  constant = std < _MIN_STD
  std = np.where(constant, 1.0, std)
  # A constant feature standardises to 0, where every head's optimal weight is 0: it is left
  # out of the optimisation (sparse features, e.g. bags of tokens, are mostly such columns).
  x = ((features - mean) / std)[:, ~constant]

  def fit_head(targets: np.ndarray, multinomial: bool) -> tuple[np.ndarray, np.ndarray]:
    used_weights, bias = _fit_logistic(x, targets, multinomial, c)
    head_weights = np.zeros((len(constant), targets.shape[1]))
    head_weights[~constant] = used_weights
    return head_weights, bias

  classes, weights, biases = {}, {}, {}
  for head, values in (("genre", genres), ("mood", moods)):
    classes[head] = sorted(set(values))
    if len(classes[head]) < 2:
      raise UserError(f"the training clips have one {head} ({classes[head][0]!r}): a judge needs "
                      f"two or more; train on a larger split")
    targets = np.asarray([[v == k for k in classes[head]] for v in values], np.float64)
    weights[head], biases[head] = fit_head(targets, True)
  every_tag = sorted({t for tags in instruments for t in tags})
  present = np.asarray([[tag in set(tags) for tag in every_tag] for tags in instruments], np.float64)
  varies = (present.min(axis=0) == 0) & (present.max(axis=0) == 1)
  classes["instruments"] = [t for t, v in zip(every_tag, varies) if v]
  if not classes["instruments"]:
    raise UserError("no instrument is present in some training clips and absent in others: "
                    "train the judge on a larger split")
  weights["instruments"], biases["instruments"] = fit_head(present[:, varies], False)
  return LabelJudge(feature_name, mean, std, classes, weights, biases)


def train(tagger, audio: Sequence[np.ndarray], sample_rate_hz: int, genres: Sequence[str],
          instruments: Sequence[Sequence[str]], moods: Sequence[str]) -> LabelJudge:
  """A judge fitted to labelled clips (audio [time] each) on a musicnn tagger's
  (`eval/musicnn.MusicnnTagger`) mean penultimate layer, named by the tagger's model."""
  features = [tagger(clip, sample_rate_hz)["penultimate"].mean(axis=0)
              for clip in tqdm(audio, desc="label judge features", unit="clip")]
  return fit(np.stack(features), genres, instruments, moods, feature_name=tagger.model_name)


def tag_f1(predicted: Sequence[str], labelled: Sequence[str]) -> float:
  """F1 of a predicted tag set against a labelled one; 1.0 when both are empty."""
  predicted, labelled = set(predicted), set(labelled)
  if not predicted and not labelled:
    return 1.0
  return 2 * len(predicted & labelled) / (len(predicted) + len(labelled))


def predict(judge: LabelJudge, features: np.ndarray) -> dict[str, list]:
  """features [clips, D] -> per head [clips]: the genre and mood predicted (str) and the
  instruments heard (a tuple of the judge's tags whose probability reaches TAG_THRESHOLD)."""
  probabilities = judge.probabilities(features)
  predicted = {head: np.asarray(judge.classes[head])[probabilities[head].argmax(axis=1)].tolist()
               for head in ("genre", "mood")}
  tags = np.asarray(judge.classes["instruments"])
  predicted["instruments"] = [tuple(tags[row >= TAG_THRESHOLD].tolist())
                              for row in probabilities["instruments"]]
  return predicted


def score_predictions(judge: LabelJudge, predicted: dict[str, Sequence], genres: Sequence[str],
                      instruments: Sequence[Sequence[str]],
                      moods: Sequence[str]) -> dict[str, np.ndarray]:
  """Per clip [clips]: genre_correct and mood_correct (0/1), instrument_f1 (over the judge's
  tags) of `predict`'s predictions (or any of that shape) against the clips' labels."""
  scores = {f"{head}_correct": (np.asarray(predicted[head]) == np.asarray(values)).astype(np.float64)
            for head, values in (("genre", genres), ("mood", moods))}
  known = set(judge.classes["instruments"])
  scores["instrument_f1"] = np.asarray([
      tag_f1(heard, [t for t in labelled if t in known])
      for heard, labelled in zip(predicted["instruments"], instruments)])
  return scores


def clip_scores(judge: LabelJudge, features: np.ndarray, genres: Sequence[str],
                instruments: Sequence[Sequence[str]], moods: Sequence[str]) -> dict[str, np.ndarray]:
  """Per clip [clips]: genre_correct and mood_correct (0/1), instrument_f1 (over the judge's tags)."""
  features = np.asarray(features, np.float64)
  _check_rows(features, {"genre": genres, "instruments": instruments, "mood": moods})
  return score_predictions(judge, predict(judge, features), genres, instruments, moods)


def genre_confusion(judge: LabelJudge, features: np.ndarray, genres: Sequence[str]) -> dict:
  """features [clips, D], genres [clips] (their labels) -> {"classes": the judge's genres,
  "counts": [labelled, predicted] clips}; a labelled genre the judge has no class for is
  skipped. It shows what a low genre accuracy is made of: on noise-like audio the judge
  calls (nearly) every clip one genre, which the accuracy alone does not tell."""
  classes = list(judge.classes["genre"])
  counts = np.zeros((len(classes), len(classes)), np.int64)
  for labelled, predicted in zip(genres, predict(judge, features)["genre"]):
    if labelled in classes:
      counts[classes.index(labelled), classes.index(predicted)] += 1
  return {"classes": classes, "counts": counts.tolist()}
