"""musiclm-eval's library half: clip sets in, every metric with its baselines out.

  report = evaluate(samples_dir="runs/demo/samples", dataset="synth_music/tiny",
                    data_dir="runs/demo/tfds", split="validation", output_dir="runs/demo/eval")

Clip sets (generated, shuffled, unconditional, real, codec, noise): eval/clip_sets.py.
This module runs the measures of the eval/ modules on them and gathers the report.

Metrics (`METRICS` says which way is better):
  FAD_musicnn, FAD_mulan   each set's embeddings against the whole reference
                           split; real = real-vs-real between split halves (the floor)
  FAD_inf_musicnn          FAD extrapolated to infinitely many windows (Gui et al.)
  KLD_<tagger>             KL(reference clip's tags || clip's tags), musicnn MTT/MSD
  MCC                      cosine of MuLan's text embedding of the prompt and
                           audio embedding of the clip
  tempo_accuracy, tempo_octave_error, key_accuracy, key_weighted_score
                           music_stats estimates against the split's labels
  judge_genre_accuracy, judge_instrument_f1, judge_mood_accuracy
                           eval/label_judge.py (trained on real audio of JUDGE_SPLIT)
                           against the split's genre, instrument and mood labels
  spectral_flatness, notes_per_second, pitch_salience
                           "is it music at all" (music_stats, basic-pitch): closer to
                           real is better, coloured noise shows where not-music lies

coherence: per clip length, how FAD's musicnn embedding drifts from a clip's first 3 s
window over its later ones and how large its neighbour steps are (eval/coherence.py),
for the generated clips at their full length and for the real and noise clips.

per_window: FAD and MCC of each reference-clip-long window of the generated clips
against its position (eval/coherence.py).

joins: per cascade stage, spectral flux at the generated clips' window joins over flux
elsewhere with a permutation p-value, and the same of the real clips at the joins a clip
of their length would have (eval/joins.py).

token_probes: with a token cache of the reference corpus, the label judge's heads fitted on
bags of each token stream (M_T, M_A, semantic, coarse, fine) of its train split, scored on
SPLIT's real tokens and, when musiclm-infer saved them (SAVE_TOKENS), on the generated
clips' tokens against their prompt's and a shuffled prompt's labels (eval/token_probes.py).

judge_genre_confusion: with a label judge, per paired set, its genre predictions against
the prompts' genres (labelled x predicted clip counts).

story: with a label judge, per story line of the generated folder, the judge's genre per
tagger window inside a segment against its own segment's and the other segment's, with a
p-value, and the same of the stories rebuilt from real clips (eval/story.py).

p_values: for each per-clip adherence score (MCC, the judge's, tempo and key
correct), a one-sided permutation test that the generated clips score higher
against their own prompts than the shuffled set against others (paired over
the same clips unless SHUFFLED_DIR gave separate ones; eval/significance.py).
"""
import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from musiclm_jax.audio import io as audio_io
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import coherence
from musiclm_jax.eval import fad
from musiclm_jax.eval import joins
from musiclm_jax.eval import kld
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import melody
from musiclm_jax.eval import memorization
from musiclm_jax.eval import music_stats
from musiclm_jax.eval import musicnn
from musiclm_jax.eval import pitch_model
from musiclm_jax.eval import report as report_lib
from musiclm_jax.eval import significance
from musiclm_jax.eval import story
from musiclm_jax.eval import token_probes
from musiclm_jax.tokenizers import acoustic
from musiclm_jax.tokenizers import conditioning

EVAL_JSON = "eval.json"
EVAL_HTML = "eval.html"
# metric -> True if higher is better, False if lower, None if closer to real is better.
METRICS = {"FAD_musicnn": False, "FAD_inf_musicnn": False, "FAD_mulan": False,
           "KLD_MTT_musicnn": False, "KLD_MSD_musicnn": False, "MCC": True,
           "tempo_accuracy": True, "tempo_octave_error": False,
           "key_accuracy": True, "key_weighted_score": True,
           "judge_genre_accuracy": True, "judge_instrument_f1": True, "judge_mood_accuracy": True,
           "spectral_flatness": None, "notes_per_second": None, "pitch_salience": None}
JUDGE_FILE = "judge"  # OUTPUT_DIR/judge.npz and judge.json: a judge trained on JUDGE_SPLIT
NO_JUDGE = "no label judge: set JUDGE_SPLIT (e.g. 'train', trains one) or JUDGE_PATH"
DEFAULT_TAGGERS = ("MTT_musicnn", "MSD_musicnn")
# Below this many embedding rows per set, FAD at a quarter of them has too few
# rows for a covariance worth extrapolating from.
MIN_FAD_INF_ROWS = 16


@dataclasses.dataclass
class Features:
  """What the metrics need of one clip set: the first tagger's window embeddings
  [windows, 753] (all clips stacked; clip_of_window [windows] says whose), each tagger's
  mean tag probabilities [clips, labels] and mean penultimate layer [clips, 200], MuLan
  audio embeddings [clips, D], and per clip tempo, key, spectral flatness and (with
  basic-pitch) notes per second and pitch salience."""
  musicnn_windows: np.ndarray
  clip_of_window: np.ndarray
  tags: dict[str, np.ndarray]
  penultimate: dict[str, np.ndarray]
  mulan_audio: np.ndarray | None
  tempo_bpm: list[float]
  keys: list[music_stats.Key]
  spectral_flatness: np.ndarray
  notes_per_second: np.ndarray | None
  pitch_salience: np.ndarray | None


def extract_features(clips: clip_sets.ClipSet, taggers: dict[str, Any], mulan: Any | None,
                     progress: tqdm, pitch: pitch_model.BasicPitch | None = None) -> Features:
  """Runs every embedder and estimator on each clip of a set (the first tagger gives FAD's windows)."""
  windows, clip_of_window, tempo, keys, mulan_audio = [], [], [], [], []
  flatness, notes, salience = [], [], []
  tags = {name: [] for name in taggers}
  penultimate = {name: [] for name in taggers}
  for i, audio in enumerate(clips.audio):
    for name, tagger in taggers.items():
      out = tagger(audio, clips.sample_rate_hz)
      tags[name].append(out["tag_probabilities"].mean(axis=0))
      penultimate[name].append(out["penultimate"].mean(axis=0))
      if name == next(iter(taggers)):
        windows.append(out["mean_pool"])
        clip_of_window += [i] * len(out["mean_pool"])
    if mulan is not None:
      mulan_audio.append(mulan.audio_embeddings(
          audio_io.resample(audio, clips.sample_rate_hz, mulan.sample_rate_hz)[None])[0])
    tempo.append(music_stats.estimate_tempo_bpm(audio, clips.sample_rate_hz))
    keys.append(music_stats.estimate_key(audio, clips.sample_rate_hz))
    flatness.append(music_stats.spectral_flatness(audio))
    if pitch is not None:
      posteriorgrams = pitch(audio, clips.sample_rate_hz)
      notes.append(pitch_model.notes_per_second(posteriorgrams, pitch.frames_per_second))
      salience.append(pitch_model.pitch_salience(posteriorgrams))
    progress.update()
  return Features(np.concatenate(windows), np.asarray(clip_of_window),
                  {name: np.stack(t) for name, t in tags.items()},
                  {name: np.stack(p) for name, p in penultimate.items()},
                  np.stack(mulan_audio) if mulan is not None else None, tempo, keys,
                  np.asarray(flatness), np.asarray(notes) if pitch is not None else None,
                  np.asarray(salience) if pitch is not None else None)


def _split_halves(features: Features) -> tuple[np.ndarray, np.ndarray]:
  """Window embeddings of the even and of the odd clips: two disjoint real sets."""
  even = features.clip_of_window % 2 == 0
  return features.musicnn_windows[even], features.musicnn_windows[~even]


def clip_scores(clip_set: clip_sets.ClipSet, features: Features, reference: clip_sets.Reference,
                judge: label_judge.LabelJudge | None,
                mulan_cosine: np.ndarray | None) -> dict[str, np.ndarray]:
  """Per-clip adherence scores [clips], those of them that can be computed here, whose
  true-vs-shuffled p-value is reported: MCC (mulan_cosine [clips]: prompt text against clip
  audio), the judge's genre, instrument and mood scores and tempo and key correct against
  the paired reference clip's labels (NaN for a clip whose prompt is no reference caption)."""
  scores = {} if mulan_cosine is None else {"MCC": np.asarray(mulan_cosine, np.float64)}
  paired, index = clip_set.paired, clip_set.paired_reference_index

  def spread(values):  # [paired clips] -> [clips], NaN where unpaired
    out = np.full(len(paired), np.nan)
    out[paired] = values
    return out

  if not paired.any():
    return scores
  if judge is not None and reference.has_judge_labels:
    judged = label_judge.clip_scores(
        judge, features.penultimate[judge.feature_name][paired],
        *[[getattr(reference, label)[i] for i in index] for label in label_judge.HEADS])
    scores.update({"judge_genre_accuracy": spread(judged["genre_correct"]),
                   "judge_instrument_f1": spread(judged["instrument_f1"]),
                   "judge_mood_accuracy": spread(judged["mood_correct"])})
  if reference.tempo_bpm is not None:
    scores["tempo_accuracy"] = spread([
        music_stats.tempo_agreement([estimate], [reference.tempo_bpm[i]])["accuracy"]
        for estimate, i in zip(np.asarray(features.tempo_bpm)[paired], index)])
  if reference.keys is not None:
    scores["key_accuracy"] = spread([
        float(music_stats.key_score(estimate, music_stats.parse_key(reference.keys[i])) == 1.0)
        for estimate, i in zip([k for k, p in zip(features.keys, paired) if p], index)])
  return scores


def compute_metrics(sets: dict[str, clip_sets.ClipSet], features: dict[str, Features],
                    reference: clip_sets.Reference,
                    mulan: Any | None, seed: int = 0,
                    judge: label_judge.LabelJudge | None = None) -> tuple[dict, dict, dict, dict]:
  """(metrics {name: {set: value}}, unavailable {name: reason}, fad_curves {set: fad_infinity()},
  clip scores {set: clip_scores()})."""
  real = features["real"]
  metrics, unavailable, curves = {}, {}, {}
  metrics["FAD_musicnn"] = {}
  for name, f in features.items():
    windows = f.musicnn_windows
    if name == "real":
      metrics["FAD_musicnn"][name] = fad.frechet_audio_distance(*_split_halves(f))
    else:
      metrics["FAD_musicnn"][name] = fad.frechet_audio_distance(real.musicnn_windows, windows)
      if len(windows) >= MIN_FAD_INF_ROWS:
        curves[name] = fad.fad_infinity(real.musicnn_windows, windows, seed=seed)
  if curves:
    metrics["FAD_inf_musicnn"] = {name: curve["fad_inf"] for name, curve in curves.items()}
  else:
    unavailable["FAD_inf_musicnn"] = (f"fewer than {MIN_FAD_INF_ROWS} musicnn windows per set: "
                                      f"generate more or longer clips")
  if mulan is None:
    unavailable["FAD_mulan"] = unavailable["MCC"] = "no MuLan export given (MULAN_EXPORT_DIR)"
  else:
    metrics["FAD_mulan"] = {name: (fad.frechet_audio_distance(real.mulan_audio[::2], real.mulan_audio[1::2])
                                   if name == "real" else
                                   fad.frechet_audio_distance(real.mulan_audio, f.mulan_audio))
                            for name, f in features.items()}
  cosines = {name: None for name in sets}
  if mulan is not None:
    for name, clip_set in sets.items():
      text = mulan.text_embeddings(clip_set.texts)
      cosines[name] = np.sum(coherence.unit_rows(text)
                             * coherence.unit_rows(features[name].mulan_audio), axis=-1)
  scores = {name: clip_scores(s, features[name], reference, judge, cosines[name])
            for name, s in sets.items()}
  if mulan is not None:
    metrics["MCC"] = {name: float(np.mean(c)) for name, c in cosines.items()}

  metrics["spectral_flatness"] = {name: float(f.spectral_flatness.mean()) for name, f in features.items()}
  if real.notes_per_second is None:
    unavailable["notes_per_second"] = unavailable["pitch_salience"] = (
        f"basic-pitch is not installed: {pitch_model.INSTALL_HINT}")
  else:
    for metric in ("notes_per_second", "pitch_salience"):
      metrics[metric] = {name: float(getattr(f, metric).mean()) for name, f in features.items()}

  if not sets["generated"].paired.any():
    reason = ("no generated prompt is a caption of the reference split: prompt with its "
              "captions to pair clips")
    for tagger in real.tags:
      unavailable[f"KLD_{tagger}"] = reason
    for metric in ("tempo_accuracy", "tempo_octave_error", "key_accuracy", "key_weighted_score",
                   "judge_genre_accuracy", "judge_instrument_f1", "judge_mood_accuracy"):
      unavailable[metric] = reason
    return metrics, unavailable, curves, scores
  if judge is None:
    reason = NO_JUDGE
  elif not reference.has_judge_labels:
    reason = f"the reference split has no {'/'.join(label_judge.HEADS)} labels"
  else:
    reason = None
  for metric in ("judge_genre_accuracy", "judge_instrument_f1", "judge_mood_accuracy"):
    if reason:
      unavailable[metric] = reason
    else:
      metrics[metric] = {name: float(np.nanmean(scores[name][metric]))
                         for name, s in sets.items() if s.paired.any()}
  scored = {name: s for name, s in sets.items() if s.paired.any()}
  for tagger, reference_tags in real.tags.items():
    metrics[f"KLD_{tagger}"] = {
        name: kld.mean_kl_divergence(reference_tags[s.paired_reference_index],
                                     features[name].tags[tagger][s.paired])
        for name, s in scored.items()}
  labels = {"tempo": reference.tempo_bpm, "key": reference.keys}
  for label, values in labels.items():
    if values is None:
      for metric in [m for m in METRICS if m.startswith(label)]:
        unavailable[metric] = f"the reference split has no {label} labels"
      continue
    for name, s in scored.items():
      index = s.paired_reference_index
      if label == "tempo":
        agreement = music_stats.tempo_agreement(
            np.asarray(features[name].tempo_bpm)[s.paired], np.asarray(values)[index])
        metrics.setdefault("tempo_accuracy", {})[name] = agreement["accuracy"]
        metrics.setdefault("tempo_octave_error", {})[name] = agreement["octave_error"]
      else:
        estimated = [k for k, p in zip(features[name].keys, s.paired) if p]
        agreement = music_stats.key_agreement(
            estimated, [music_stats.parse_key(values[i]) for i in index])
        metrics.setdefault("key_accuracy", {})[name] = agreement["accuracy"]
        metrics.setdefault("key_weighted_score", {})[name] = agreement["weighted_score"]
  return metrics, unavailable, curves, scores


def genre_confusions(sets: dict[str, clip_sets.ClipSet], features: dict[str, Features],
                     reference: clip_sets.Reference,
                     judge: label_judge.LabelJudge | None) -> dict | None:
  """Per set whose clips are paired with reference captions, the judge's genre confusion
  (label_judge.genre_confusion: labelled x predicted counts); None without a judge or labels."""
  if judge is None or not reference.has_judge_labels:
    return None
  confusion = {}
  for name, clip_set in sets.items():
    if clip_set.paired.any():
      confusion[name] = label_judge.genre_confusion(
          judge, features[name].penultimate[judge.feature_name][clip_set.paired],
          [reference.genre[i] for i in clip_set.paired_reference_index])
  return confusion or None


def run_suite(generated: clip_sets.ClipSet, reference: clip_sets.Reference, *,
              shuffled: clip_sets.ClipSet | None = None,
              unconditional: clip_sets.ClipSet | None = None, taggers: dict[str, Any],
              mulan: Any | None = None, codec: Any | None = None,
              judge: label_judge.LabelJudge | None = None,
              pitch: pitch_model.BasicPitch | None = None,
              full_length_generated: clip_sets.ClipSet | None = None, seed: int = 0) -> dict:
  """Every metric on every clip set; the report eval.json holds (see module docstring).

  judge: a label judge over the penultimate features of one of `taggers`; pitch:
  basic-pitch for notes per second and pitch salience (None: those are unavailable);
  full_length_generated: the generated clips before cropping, for coherence against length
  (None: the generated set as given).
  """
  sets = {"generated": generated,
          "shuffled": clip_sets.shuffled_set(shuffled or generated, reference, seed),
          "unconditional": unconditional, "real": clip_sets.real_set(reference),
          "codec": clip_sets.codec_set(reference, codec) if codec is not None else None,
          "noise": clip_sets.noise_set(reference, seed)}
  missing = {"unconditional": "no UNCONDITIONAL_DIR given (musiclm-infer with GUIDANCE_SCALE=0.0)",
             "codec": "no SOUNDSTREAM_EXPORT_DIR given"}
  sets_given = {name: s for name, s in sets.items() if s is not None}
  # Without SHUFFLED_DIR the shuffled set is the generated clips: their features, not computed twice.
  to_extract = {name: s for name, s in sets_given.items() if name != "shuffled" or shuffled}
  with tqdm(total=sum(len(s.audio) for s in to_extract.values()), desc="clips", unit="clip") as bar:
    features = {name: extract_features(s, taggers, mulan, bar, pitch)
                for name, s in to_extract.items()}
  features.setdefault("shuffled", features["generated"])
  features = {name: features[name] for name in sets_given}  # in SETS order, as the report's
  metrics, unavailable, curves, scores = compute_metrics(sets_given, features, reference, mulan,
                                                         seed, judge)
  first_tagger = next(iter(taggers.values()))
  window_seconds = first_tagger.window_seconds
  coherence_sets = {name: (sets[name], coherence.windows_per_clip(features[name].musicnn_windows,
                                                                 features[name].clip_of_window))
                    for name in ("generated", "real", "noise")}
  if full_length_generated is not None:
    # Clips no longer than the cropped ones have the cropped set's windows already.
    coherence_sets["generated"] = (full_length_generated, [
        cropped_windows if len(audio) == len(cropped_audio) else
        first_tagger(audio, full_length_generated.sample_rate_hz)["mean_pool"]
        for audio, cropped_audio, cropped_windows in tqdm(
            zip(full_length_generated.audio, generated.audio, coherence_sets["generated"][1]),
            total=len(generated.audio), desc="full-length clips", unit="clip")])
  clip_seconds = max(len(a) for a in reference.audio) / reference.sample_rate_hz
  long_clips = full_length_generated or generated
  per_window = coherence.per_window_metrics(long_clips.audio, long_clips.sample_rate_hz,
                                            long_clips.texts, clip_seconds, first_tagger,
                                            features["real"].musicnn_windows, mulan)
  if per_window is None:
    unavailable["per_window"] = (f"no generated clip is longer than the reference clips "
                                 f"({clip_seconds:g} s): generate longer ones")
  confusion = genre_confusions(sets_given, features, reference, judge)
  if confusion is None:
    unavailable["judge_genre_confusion"] = unavailable.get("judge_genre_accuracy", NO_JUDGE)
  return {"sets": {name: {"title": clip_sets.SET_TITLES[name], "clips": len(s.audio),
                          "paired_clips": int(np.sum(s.paired))}
                   for name, s in sets_given.items()},
          "sets_not_given": {name: missing[name] for name in clip_sets.SETS if sets[name] is None},
          "metrics": {name: {"higher_is_better": METRICS[name], "values": metrics[name]}
                      for name in METRICS if name in metrics},
          "unavailable": unavailable, "fad_curves": curves,
          "p_values": significance.true_vs_shuffled(scores["generated"], scores["shuffled"],
                                                     paired=shuffled is None, seed=seed),
          "coherence": {name: coherence.coherence_by_length(
                            [(len(audio) / clips.sample_rate_hz, windows)
                             for audio, windows in zip(clips.audio, per_clip)], window_seconds)
                        for name, (clips, per_clip) in coherence_sets.items()},
          "per_window": per_window,
          "judge_genre_confusion": confusion,
          "notes": {"FAD real": "real-vs-real FAD between the even and the odd clips of the split",
                    "FAD shuffled": "the shuffled set is the generated set scored against other "
                                    "prompts: set-level FAD equals the generated one",
                    "p-values": "one-sided permutation test: generated clips score higher against "
                                "their own prompts than shuffled-prompt clips against theirs",
                    "closer to real": "spectral flatness, notes per second and pitch salience are "
                                      "better the closer they are to the real set's"}}


def evaluate(*, samples_dir: str, dataset: str, data_dir: str | None, split: str, output_dir: str,
             shuffled_dir: str | None = None, unconditional_dir: str | None = None,
             mulan_export_dir: str | None = None, mulan_rvq_path: str | None = None,
             soundstream_export_dir: str | None = None,
             taggers: Sequence[str] = DEFAULT_TAGGERS, max_reference_clips: int | None = None,
             judge_split: str | None = None, judge_path: str | None = None,
             memorization_semantic_export_dir: str | None = None,
             memorization_token_cache_dir: str | None = None,
             memorization_kmeans_path: str | None = None, memorization_examples: int = 32,
             probe_token_cache_dir: str | None = None, probe_train_split: str = "train",
             probe_max_train_clips: int | None = 1000, seed: int = 0) -> dict:
  """Checks the inputs, runs `run_suite`, writes OUTPUT_DIR/eval.json and eval.html; returns the report.

  mulan_rvq_path: MuLan's RVQ file, loaded with the export (the tokenizer needs it; its
  embeddings do not). max_reference_clips: the first N clips of the split (None: all).
  judge_split: a split of `dataset` to train the label judge on (saved as
  OUTPUT_DIR/judge.npz and judge.json); judge_path: a saved judge's path without suffix.
  memorization_*: the semantic stage export, the token cache it trained on and the k-means
  file of its tokens: the memorization study (eval/memorization.py) on the cache's first
  `memorization_examples` training examples; all three or none (off).
  probe_token_cache_dir: a token cache of `dataset` with SPLIT and `probe_train_split`: the
  token probes (eval/token_probes.py); None: off. probe_max_train_clips: the probes are fitted
  on at most this many of the split's clips, evenly spaced (None: all): each of their L-BFGS
  fits costs clips x features per step (on small_x16's 10,072 clips the eval did not finish
  in 35 minutes).
  """
  # Every input is read and checked before any model loads. Generated clips are cut to the
  # reference's clip length: every set is scored on the same duration, and a long
  # generation's windows do not outweigh the other clips' in FAD.
  reference = clip_sets.read_reference(dataset, data_dir, split, max_reference_clips)
  clip_seconds = max(len(a) for a in reference.audio) / reference.sample_rate_hz

  def infer_set(folder, name):
    return clip_sets.cropped(
        clip_sets.paired_set(name, *clip_sets.read_infer_folder(folder, name), reference),
        clip_seconds)

  text_lines, (stitched_audio, stitched_rate, stitchings), stories = clip_sets.read_infer_lines(
      samples_dir)
  full_length_generated = clip_sets.paired_set("generated", *text_lines, reference)
  generated = clip_sets.cropped(full_length_generated, clip_seconds)
  shuffled = infer_set(shuffled_dir, "shuffled") if shuffled_dir else None
  unconditional = infer_set(unconditional_dir, "unconditional") if unconditional_dir else None
  if bool(mulan_export_dir) != bool(mulan_rvq_path):
    raise UserError("give both MULAN_EXPORT_DIR and MULAN_RVQ_PATH, or neither")
  if not taggers:
    raise UserError(f"taggers is empty: FAD_musicnn and KLD need at least one of {DEFAULT_TAGGERS}")
  if judge_split and judge_path:
    raise UserError("give JUDGE_SPLIT (train a label judge) or JUDGE_PATH (load one), not both")
  memorization_inputs = (memorization_semantic_export_dir, memorization_token_cache_dir,
                         memorization_kmeans_path)
  if any(memorization_inputs) and not all(memorization_inputs):
    raise UserError("give all of MEMORIZATION_SEMANTIC_EXPORT_DIR, MEMORIZATION_TOKEN_CACHE_DIR "
                    "and MEMORIZATION_KMEANS_PATH (the memorization study), or none")
  memorization_parts = None  # (examples, continuer, ground cost)
  if all(memorization_inputs):
    memorization_parts = memorization.load_inputs(
        memorization_token_cache_dir, memorization_semantic_export_dir, memorization_kmeans_path,
        memorization_examples)
  if probe_max_train_clips is not None and probe_max_train_clips < 1:
    raise UserError(f"probe_max_train_clips {probe_max_train_clips}: give 1 or more (None: all)")
  probe_inputs = None  # (train records, SPLIT's records, generated (prompts, codes))
  if probe_token_cache_dir:
    probe_inputs = (token_probes.read_records(probe_token_cache_dir, probe_train_split,
                                              probe_max_train_clips),
                    token_probes.read_records(probe_token_cache_dir, split),
                    token_probes.read_generated(samples_dir))
  judge_reference = (clip_sets.read_judge_split(dataset, data_dir, judge_split) if judge_split
                     else None)
  judge = label_judge.LabelJudge.load(judge_path) if judge_path else None
  if judge is not None and judge.feature_name not in taggers:
    raise UserError(f"the label judge at {judge_path} reads {judge.feature_name} features: add it "
                    f"to TAGGERS {tuple(taggers)}")
  mulan = codec = None
  if mulan_export_dir:
    mulan = conditioning.MuLanTokenizer.load(mulan_export_dir, mulan_rvq_path)
  if soundstream_export_dir:
    codec = acoustic.SoundStreamTokenizer.load(soundstream_export_dir)
  tagger_models = {name: musicnn.MusicnnTagger(name) for name in taggers}
  os.makedirs(output_dir, exist_ok=True)
  if judge_reference is not None:
    judge = label_judge.train(tagger_models[taggers[0]], judge_reference.audio,
                              judge_reference.sample_rate_hz, judge_reference.genre,
                              judge_reference.instruments, judge_reference.mood)
    judge.save(os.path.join(output_dir, JUDGE_FILE))
  try:
    pitch = pitch_model.BasicPitch()
  except UserError:
    pitch = None  # notes per second and pitch salience are reported unavailable, with the install hint
  report = run_suite(generated, reference, shuffled=shuffled, unconditional=unconditional,
                     taggers=tagger_models, mulan=mulan, codec=codec, judge=judge, pitch=pitch,
                     full_length_generated=full_length_generated, seed=seed)
  # A long-clip measure like coherence, but of the text and story lines (their windows are known).
  figures = joins.joins_report(stitched_audio, stitchings, stitched_rate, reference.audio,
                               reference.sample_rate_hz, seed=seed)
  _add_section(report, "joins", figures)
  if judge is None:  # without story lines, their absence is the reason
    figures = NO_JUDGE if stories else story.NO_STORIES
  else:
    figures = story.story_report(stories, stitched_rate, reference,
                                 tagger_models[judge.feature_name], judge, seed)
  _add_section(report, "story", figures)
  generated_for_melody, melodies, melody_rate = clip_sets.read_melody_pairs(samples_dir)
  if len(melodies) < 2:
    report["unavailable"]["melody_adherence"] = (
        f"{len(melodies)} generated clip(s) with a melody_from input: the mismatched-melody "
        f"baseline needs 2")
  elif pitch is None:
    report["unavailable"]["melody_adherence"] = (
        f"basic-pitch is not installed: {pitch_model.INSTALL_HINT}")
  else:
    report["melody_adherence"] = melody.melody_adherence(generated_for_melody, melodies,
                                                         melody_rate, pitch)
  if memorization_parts is None:
    report["unavailable"]["memorization"] = ("no MEMORIZATION_SEMANTIC_EXPORT_DIR, "
                                             "MEMORIZATION_TOKEN_CACHE_DIR and MEMORIZATION_KMEANS_PATH")
  else:
    report["memorization"] = memorization.memorization_study(*memorization_parts, seed=seed)
  if probe_inputs is None:
    report["unavailable"]["token_probes"] = "no PROBE_TOKEN_CACHE_DIR"
  else:
    probe_train, probe_held_out, (prompts, codes) = probe_inputs
    probes = token_probes.fit_probes(probe_train)
    report["token_probes"] = token_probes.probe_real(probes, probe_train, probe_held_out, seed)
    try:
      if not prompts:
        raise UserError(token_probes.NO_TOKENS)
      report["token_probes"] += token_probes.probe_generated(probes, probe_train, probe_held_out,
                                                             prompts, codes, seed)
    except UserError as e:  # the rest of the report stands: say why this part is missing
      report["unavailable"]["token_probes of generated tokens"] = str(e)
  if judge_split == split:
    report["notes"]["label judge"] = ("trained on SPLIT itself: the real set's judge scores are its "
                                      "training accuracy, not a held-out one")
  report["inputs"] = {"samples_dir": samples_dir, "dataset": dataset, "data_dir": data_dir,
                      "split": split, "shuffled_dir": shuffled_dir,
                      "unconditional_dir": unconditional_dir, "mulan_export_dir": mulan_export_dir,
                      "soundstream_export_dir": soundstream_export_dir, "taggers": list(taggers),
                      "judge_split": judge_split, "judge_path": judge_path,
                      "memorization_semantic_export_dir": memorization_semantic_export_dir,
                      "memorization_token_cache_dir": memorization_token_cache_dir,
                      "memorization_kmeans_path": memorization_kmeans_path,
                      "probe_token_cache_dir": probe_token_cache_dir,
                      "probe_train_split": probe_train_split,
                      "probe_max_train_clips": probe_max_train_clips, "seed": seed,
                      "clip_seconds": clip_seconds}
  with open(os.path.join(output_dir, EVAL_JSON), "w") as f:
    json.dump(report, f, indent=1)
  report_lib.write_html(os.path.join(output_dir, EVAL_HTML), report)
  return report


def _add_section(report: dict, name: str, figures: dict | str) -> None:
  """report[name] = figures, or, when figures is the one line saying why there are none,
  report["unavailable"][name] = figures."""
  if isinstance(figures, str):
    report["unavailable"][name] = figures
  else:
    report[name] = figures
