r"""`make demo`: MusicLM from nothing to music on 2 CPU cores.

Builds the synth_music corpus, trains every component at tiny scale with the
same binaries a user runs (musiclm-train, -export, -tokenize, -infer and the
tokenizer fitting binaries; the melody embedder, whose retrieval it prints, and
semantic and coarse stages that follow a tune's pitch classes; the fine stage
only with --quick, see FULL), and generates music
for a few held-out captions, a 60 s long generation, a two-segment story
(captions of two genres) and held-out captions with a hummed or whistled melody
(their piece's, and another's as the control), ending with the path of the
generated index.html, checks that the music follows its prompts and its melody,
and musiclm-eval's table: every metric next to its baselines (shuffled prompts,
an unconditional run, real held-out audio and its codec reconstructions).

  python -m musiclm_jax.demo [--output_dir=runs/demo] [--quick]

Every step prints the command it ran and its time; its log goes to
OUTPUT_DIR/logs/. A step whose outputs exist is skipped, so a re-run reuses
what finished (training binaries also resume from their checkpoints).
`--quick` runs the same chain on a corpus of 2 s clips with a few steps per
model, and the fine stage too (all 12 levels decoded): it checks the wiring of
every binary, not the music.
"""
import dataclasses
import json
import os
import sys
import time
from typing import Iterable

from absl import flags

import numpy as np

from musiclm_jax import results_file
from musiclm_jax.binary_runner import BinaryRunner
from musiclm_jax.audio import io as audio_io
from musiclm_jax.audio import rates
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import melody as melody_eval
from musiclm_jax.eval import pitch_model
from musiclm_jax.eval import report
from musiclm_jax.eval import significance

_OUTPUT_DIR = flags.DEFINE_string("output_dir", os.path.join(os.getcwd(), "runs", "demo"),
                                  "Where the demo writes its corpus, runs and samples.")
_QUICK = flags.DEFINE_bool("quick", False, "A few steps per model on 2 s clips: checks the wiring.")
MELODY_ADHERENCE = "melody_adherence.json"  # in the samples folder
MELODY_RETRIEVAL = "retrieval.json"  # in the melody embedder's folder
# The text-adherence levers of docs/design.md section 10, where the paper's settings lose
# the prompt at this scale: MuLan's RVQ fits 8 codes per level (paper 1024: a small MuLan's
# caption then lands on its clip's level-1 code 0.53 of the time on tiny, 0.03 with 480),
# and the prompt lines sample the semantic stage with classifier-free guidance 3 (sampled
# S then carries a held-out caption's genre 0.50 vs 0.18 for shuffled prompts, unguided
# 0.31) and the coarse stage with 5, the reference run's (on the demo's own stages: MCC
# p 0.05 and KLD below shuffled, where 3 gave p 0.33 and KLD above; design section 10).
# The unconditional baseline's lines carry no guidance (GUIDANCE_SCALE 0 applies).
MULAN_CODES_PER_LEVEL = 8
PROMPT_GUIDANCE = {"semantic": 3.0, "coarse": 5.0}


@dataclasses.dataclass(frozen=True)
class Mode:
  """What differs between the real demo and --quick.

  corpus: synth_music config name; clip_seconds its clip length.
  train_steps: per component.
  stage_crop_seconds: crops of the semantic, coarse and fine stages; each is also
    the stage's cascade window, so every window is in-distribution. The fine stage is
    trained only when a fine level is decoded (`stages`).
  stage_stride_seconds: how far each stage's window advances.
  long_seconds, story_seconds: of the long generation and of each story segment.
  num_captions: held-out captions to generate for.
  num_melodies: held-out pieces whose hummed or whistled melody is a prompt's
    `melody_from`, each with its own caption and again with the next piece's melody.
  eval_taggers: musicnn taggers musiclm-eval runs (KLD per tagger; the first gives FAD).
  decode_levels: codec levels the audio is decoded from (None: all 12, the paper's).
  held_out_clips: the first N clips of the held-out split (None: all): every prompt's caption
    and melody comes from them, and they are the eval's real, codec and noise sets.
  """
  corpus: str
  clip_seconds: float
  train_steps: dict
  stage_crop_seconds: dict
  stage_stride_seconds: dict
  prompt_seconds: float
  long_seconds: float
  story_seconds: float
  num_captions: int
  num_melodies: int
  eval_taggers: tuple[str, ...]
  decode_levels: int | None
  held_out_clips: int | None

  @property
  def stages(self) -> list[str]:
    """The stages trained and run: the fine stage only when a fine level is decoded
    (`token_layout.decodes_fine_levels`)."""
    return [stage for stage in self.stage_crop_seconds
            if stage != "fine" or token_layout.decodes_fine_levels(self.decode_levels)]

# The demo trains on synth_music/small (636 training clips), not tiny (160): on tiny every
# stage memorises its clips and the coarse stage never predicts held-out clips better than
# code frequencies, so what it samples is noise whatever the prompt. On small, MuLan (600
# steps) ranks held-out captions and the coarse stage generalises (past 1500 steps its
# held-out CE no longer falls, but the caption reaches its audio more). Of the 45 min, 500
# more codec steps buy more than coarse steps past 2000 (design section 10, "Codec steps buy
# more": MCC p 0.13 -> 0.002, KLD below shuffled prompts' by 0.34, not 0.02); the audio
# is decoded from the codec's first 2 levels, which carry what a judge hears, so no fine
# stage is trained (docs/design.md section 10: "At the demo's scale" for why, "The demo on
# synth_music/small" for what it gives).
FULL = Mode(
    corpus="small", clip_seconds=10.0,
    train_steps=dict(soundstream=1000, w2v_bert=600, mulan=600, melody=200, semantic=300,
                     coarse=2000),
    stage_crop_seconds=dict(semantic=10.0, coarse=2.0, fine=1.0),
    stage_stride_seconds=dict(semantic=5.0, coarse=1.0, fine=0.48),
    prompt_seconds=10.0, long_seconds=60.0, story_seconds=10.0, num_captions=24,
    num_melodies=8, eval_taggers=("MTT_musicnn", "MSD_musicnn"), decode_levels=2,
    held_out_clips=40)
QUICK = Mode(
    corpus="quick", clip_seconds=2.0,
    train_steps=dict(soundstream=4, w2v_bert=4, mulan=4, melody=4, semantic=4, coarse=4, fine=4),
    stage_crop_seconds=dict(semantic=2.0, coarse=1.0, fine=0.5),
    stage_stride_seconds=dict(semantic=1.0, coarse=0.4, fine=0.24),
    prompt_seconds=2.0, long_seconds=4.0, story_seconds=2.0, num_captions=2,
    num_melodies=2, eval_taggers=("MTT_musicnn",), decode_levels=None, held_out_clips=None)


def _binding(name: str, value) -> str:
  return f"--gin.{name}={value!r}"


class Pipeline:
  """Runs the demo's steps in order, skipping those whose outputs exist; `runner` starts the
  binaries (`binary_runner.BinaryRunner`: the same processes, without 19 times the imports)."""

  def __init__(self, output_dir: str, mode: Mode, runner: BinaryRunner):
    self.out = os.path.abspath(output_dir)
    self.mode = mode
    self.runner = runner
    self.data_dir = os.path.join(self.out, "tfds")
    self.logs = os.path.join(self.out, "logs")
    self.dataset = f"synth_music/{mode.corpus}"
    self.timings: list[tuple[str, float, bool]] = []
    os.makedirs(self.logs, exist_ok=True)

  def path(self, *parts: str) -> str:
    return os.path.join(self.out, *parts)

  def step(self, name: str, outputs: list[str], commands: list) -> None:
    """Runs `commands` (python -m module + flags, or callables) unless an earlier run finished them.

    Finished means: the step's marker in OUTPUT_DIR/logs and every path of `outputs` exist.
    """
    marker = os.path.join(self.logs, f"{name}.done")
    if os.path.exists(marker) and all(os.path.exists(p) for p in outputs):
      print(f"[{name}] done earlier, reusing {outputs[0]}")
      self.timings.append((name, 0.0, True))
      return
    start = time.perf_counter()
    log_path = os.path.join(self.logs, f"{name}.log")
    open(log_path, "w").close()  # each command appends: the binaries write to it too
    for command in commands:
      if callable(command):  # a library call, in this process
        print(f"[{name}] {command.__doc__.splitlines()[0]}", flush=True)
        command()
        continue
      print(f"[{name}] python -m {' '.join(command)}", flush=True)
      with open(log_path, "a") as log:
        log.write(f"$ python -m {' '.join(command)}\n")
      status = self.runner.run(command[0], command[1:], log_path)
      if status:
        with open(log_path) as f:
          tail = f.read().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise UserError(f"demo step {name} failed (exit {status}): see {log_path}")
    seconds = time.perf_counter() - start
    with open(marker, "w") as f:
      f.write(f"{seconds:.1f}\n")
    self.timings.append((name, seconds, False))
    print(f"[{name}] {seconds:.0f} s", flush=True)

  def train_and_export(self, name: str, experiment: str, bindings: list[str]) -> str:
    """musiclm-train then musiclm-export; returns the export folder."""
    model_dir, export_dir = self.path(name), self.path(name, "export")
    steps = self.mode.train_steps[name]
    self.step(name, [os.path.join(export_dir, "params")], [
        ["musiclm_jax.train", f"--gin_file=experiments/{experiment}.gin",
         _binding("MODEL_DIR", model_dir), _binding("TRAIN_STEPS", steps), *bindings],
        ["musiclm_jax.export", "--gin_file=runs/export.gin", _binding("MODEL_DIR", model_dir),
         _binding("EXPORT_DIR", export_dir)]])
    return export_dir

  def run(self) -> dict:
    mode = self.mode
    data = [_binding("DATA_DIR", self.data_dir), _binding("DATASET", self.dataset)]
    start = time.perf_counter()
    self.build_corpus()

    # experiments/soundstream_synth_small.gin has the codec's recipe (reconstruction losses,
    # learning rate 5e-4) and why. --quick's mel loss and RVQ join at step 1 (not at the
    # recipe's start steps), so its 4 steps run both.
    soundstream = self.train_and_export("soundstream", "soundstream_synth_small", data + (
        [] if mode is FULL else [_binding("MEL_START_STEP", 1), _binding("QUANTIZER_START_STEP", 1)]))

    w2v_bert = self.train_and_export("w2v_bert", "w2v_bert_synth", data + (
        [] if mode is FULL else [_binding("CROP_SECONDS", 1.0)]))
    kmeans = self.path("w2v_bert", "kmeans.npz")
    self.step("kmeans", [kmeans], [[
        "musiclm_jax.fit_kmeans", "--gin_file=runs/fit_kmeans.gin", *data,
        _binding("W2V_BERT_EXPORT_DIR", w2v_bert), _binding("KMEANS_PATH", kmeans),
        _binding("SEMANTIC_LAYER", 2),  # of the tiny MLM module's 3 (paper: 7 of 12)
        *([] if mode is FULL else [_binding("CROP_SECONDS", 1.0), _binding("NUM_CLUSTERS", 16)])]])

    mulan = self.train_and_export("mulan", "mulan_synth", data + (
        [] if mode is FULL else [_binding("WINDOW_SECONDS", 1.0)]))
    mulan_rvq = self.path("mulan", "rvq.npz")
    self.step("mulan_rvq", [mulan_rvq], [[
        "musiclm_jax.fit_mulan_rvq", "--gin_file=runs/fit_mulan_rvq.gin", *data,
        _binding("EXPORT_DIR", mulan), _binding("OUTPUT_DIR", self.path("mulan")),
        _binding("FITTED_CODES_PER_LEVEL", MULAN_CODES_PER_LEVEL)]])

    # The paper's melody embedder learns from the corpus's same-melody pairs (the mix, the
    # notes on other instruments, a whistle, a hum), and the demo prints what it retrieves.
    # Its tokens carry no tune into music at this scale (docs/design.md section 11), so the
    # stages read the tune's pitch classes instead and no melody RVQ or tokens are made.
    # --quick: a 2 s clip holds one 2 s window, and a batch takes one clip per piece (16
    # training pieces; 8 rows also split over the tests' 8 CPU devices).
    self.train_and_export("melody", "melody_synth", data + (
        [] if mode is FULL else [_binding("WINDOW_SECONDS", 2.0), _binding("BATCH_SIZE", 8)]))
    self.step("melody_retrieval", [self.path("melody", MELODY_RETRIEVAL)],
              [self.write_melody_retrieval])

    tokenizers = [_binding("SOUNDSTREAM_EXPORT_DIR", soundstream),
                  _binding("W2V_BERT_EXPORT_DIR", w2v_bert), _binding("KMEANS_PATH", kmeans),
                  _binding("MULAN_EXPORT_DIR", mulan), _binding("MULAN_RVQ_PATH", mulan_rvq)]
    cache = self.path("tokens")
    self.step("tokenize", [os.path.join(cache, "metadata.json")], [[
        "musiclm_jax.tokenize_dataset", "--gin_file=runs/tokenize.gin", *data, *tokenizers,
        _binding("TOKEN_CACHE_DIR", cache)]])

    # One semantic and one coarse stage for both kinds of prompt: each reads [M | the tune's
    # pitch classes] (beyond the paper, whose semantic stage reads melody tokens; design
    # section 11), and melody dropout makes a NULL tune (text alone) in-distribution.
    experiments = dict(semantic="semantic_pitch_stage", coarse="coarse_pitch_stage",
                       fine="fine_stage")
    stages = {}
    for stage in mode.stages:
      stages[stage] = self.train_and_export(stage, experiments[stage], [
          _binding("TOKEN_CACHE_DIR", cache),
          _binding("CROP_SECONDS", mode.stage_crop_seconds[stage])])

    samples, unconditional = self.path("samples"), self.path("samples_unconditional")
    captions_file, prompts_file = self.write_prompts()
    infer = ["musiclm_jax.infer", "--gin_file=runs/infer.gin", *tokenizers,
             _binding("SEMANTIC_EXPORT_DIR", stages["semantic"]),
             _binding("COARSE_EXPORT_DIR", stages["coarse"]),
             _binding("FINE_EXPORT_DIR", stages.get("fine")),
             _binding("DECODE_LEVELS", mode.decode_levels), _binding("SECONDS", mode.prompt_seconds),
             # A step reruns only when unfinished, maybe after its models changed: start afresh.
             _binding("IF_OUTPUT_EXISTS", "overwrite"),
             # The tokens too, for the eval's token probes.
             _binding("SAVE_TOKENS", True),
             *[_binding(f"cascade.Windows.{stage}_window_seconds", mode.stage_crop_seconds[stage])
               for stage in mode.stages],
             *[_binding(f"cascade.Windows.{stage}_stride_seconds", mode.stage_stride_seconds[stage])
               for stage in mode.stages]]
    self.step("generate", [os.path.join(samples, "index.html")], [[
        *infer, _binding("PROMPTS_FILE", prompts_file), _binding("OUTPUT_DIR", samples)]])
    # The unconditional baseline: guidance scale 0 keeps only the NULL-conditioned logits.
    self.step("generate_unconditional", [os.path.join(unconditional, "index.html")], [[
        *infer, _binding("PROMPTS_FILE", captions_file), _binding("OUTPUT_DIR", unconditional),
        _binding("GUIDANCE_SCALE", 0.0)]])
    self.step("melody_adherence", [self.path("samples", MELODY_ADHERENCE)],
              [self.write_melody_adherence])

    adherence = self.path("samples", "prompt_adherence.json")
    self.step("prompt_adherence", [adherence], [[
        "musiclm_jax.eval.prompt_adherence", f"--samples_dir={samples}",
        f"--mulan_export_dir={mulan}", f"--mulan_rvq_path={mulan_rvq}",
        f"--output_path={adherence}"]])
    evaluation = self.path("eval")
    self.step("eval", [os.path.join(evaluation, "eval.json")], [[
        "musiclm_jax.evaluate", "--gin_file=runs/eval.gin", *data, _binding("SPLIT", "validation"),
        _binding("SAMPLES_DIR", samples), _binding("UNCONDITIONAL_DIR", unconditional),
        _binding("OUTPUT_DIR", evaluation), _binding("MULAN_EXPORT_DIR", mulan),
        _binding("MULAN_RVQ_PATH", mulan_rvq), _binding("SOUNDSTREAM_EXPORT_DIR", soundstream),
        # The judge that is not MuLan: genre/instrument/mood classifiers fitted on the
        # corpus's real training audio, scored on every clip set with p-values.
        _binding("TAGGERS", mode.eval_taggers), _binding("JUDGE_SPLIT", "train"),
        _binding("MAX_REFERENCE_CLIPS", mode.held_out_clips),
        # The paper's memorization study on the semantic stage's own training examples.
        _binding("MEMORIZATION_SEMANTIC_EXPORT_DIR", stages["semantic"]),
        _binding("MEMORIZATION_TOKEN_CACHE_DIR", cache), _binding("MEMORIZATION_KMEANS_PATH", kmeans),
        # Which token stream of the chain carries the captions' labels (real and generated).
        _binding("PROBE_TOKEN_CACHE_DIR", cache)]])
    return {"seconds": time.perf_counter() - start, "index": os.path.join(samples, "index.html"),
            "adherence": adherence, "eval": evaluation}

  def build_corpus(self) -> None:
    """In-process: the builder is a library call, and TFDS skips a prepared config."""
    from musiclm_jax.data.synth_music import builder  # pylint: disable=import-outside-toplevel
    start = time.perf_counter()
    print(f"[corpus] synth_music/{self.mode.corpus} into {self.data_dir}", flush=True)
    self.corpus = builder.build_synth_music(self.data_dir, self.mode.corpus)
    self.timings.append(("corpus", time.perf_counter() - start, False))
    print(f"[corpus] {self.timings[-1][1]:.0f} s", flush=True)

  def held_out(self):
    """The held-out clips the prompts come from (`Mode.held_out_clips`), as a tf.data.Dataset."""
    return self.corpus.as_dataset(split="validation").take(self.mode.held_out_clips or -1)

  def write_prompts(self) -> tuple[str, str]:
    """(held-out captions, the same plus one long generation, a two-segment story of two
    genres (`story_captions`) and the melody lines of `write_melodies`), as JSON-lines
    prompt files."""
    captions = [ex["caption"].decode()
                for ex in self.held_out().take(self.mode.num_captions).as_numpy_iterator()]
    caption_lines = [{"text": c, "seed": i} for i, c in enumerate(captions)]
    story = story_captions(self.held_out().as_numpy_iterator(), self.dataset)
    lines = caption_lines + [
        {"text": captions[0], "seconds": self.mode.long_seconds, "seed": 100},
        {"story": [[caption, self.mode.story_seconds] for caption in story], "seed": 200}]
    self.first_melody_line = len(lines) + 1  # line numbers count from 1, as musiclm-infer's
    lines += self.write_melodies()
    lines = [dict(line, guidance_scale=PROMPT_GUIDANCE) for line in lines]
    paths = self.path("captions.jsonl"), self.path("prompts.jsonl")
    for path, content in zip(paths, (caption_lines, lines)):
      with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in content)
    return paths

  def write_melodies(self) -> list[dict]:
    """Hums or whistles the melodies of held-out pieces as WAVs; returns their prompt lines.

    Piece i gives two lines with its caption and one seed: `melody_from` its own
    melody, and the next piece's (the swapped control of `write_melody_adherence`).
    One clip per source piece (a piece's clips share its tune); clips with fewer
    than melody_pairs.MIN_TUNE_NOTES notes in prompt_seconds are passed over. The
    clip's own first prompt_seconds are written beside its melody (`melody_music`):
    what real music of that tune scores.
    """
    seconds = self.mode.prompt_seconds
    corpus_rate_hz = self.corpus.info.features["audio"].sample_rate
    pieces = {}  # source piece -> (caption, notes, audio) of its first clip with a tune
    for example in self.held_out().as_numpy_iterator():
      notes = melody_voices.crop(melody_voices.melody_notes(example), 0.0, seconds)
      has_tune = len(notes.pitch) >= melody_pairs.MIN_TUNE_NOTES
      if has_tune and example["source_id"] not in pieces:
        audio = example["audio"][:round(seconds * corpus_rate_hz)]
        pieces[example["source_id"]] = (example["caption"].decode(), notes, audio_io.resample(
            audio, corpus_rate_hz, rates.SOUNDSTREAM_SAMPLE_RATE_HZ))
      if len(pieces) == self.mode.num_melodies:
        break
    pieces = list(pieces.values())
    if len(pieces) < 2:
      raise UserError(f"{self.dataset} validation has {len(pieces)} clips with a tune of >= "
                      f"{melody_pairs.MIN_TUNE_NOTES} notes in {seconds:g} s; the melody lines "
                      "need 2")
    os.makedirs(self.path("melodies"), exist_ok=True)
    paths, self.melody_music = [], []
    for i, (_, notes, audio) in enumerate(pieces):
      voice, tune = melody_voices.voice_tune(i, notes, seconds, rates.SOUNDSTREAM_SAMPLE_RATE_HZ)
      paths.append(self.path("melodies", f"piece{i}_{voice}.wav"))
      audio_io.save_wav(paths[-1], tune, rates.SOUNDSTREAM_SAMPLE_RATE_HZ)
      self.melody_music.append(self.path("melodies", f"piece{i}_music.wav"))
      audio_io.save_wav(self.melody_music[-1], audio, rates.SOUNDSTREAM_SAMPLE_RATE_HZ)
    self.melodies = paths
    return [{"text": caption, "melody_from": paths[(i + swap) % len(paths)], "seed": 300 + i}
            for i, (caption, _, _) in enumerate(pieces) for swap in (0, 1)]

  def write_melody_adherence(self) -> None:
    """Melody adherence of the melody lines' music (eval/melody.py), as JSON in the samples,
    with the same figure of the tunes' own real music ('real_music', against the next tune)."""
    samples_dir = self.path("samples")
    records = {r["line"]: r for r in results_file.read(samples_dir)}
    # As written (24 kHz): generated music may clip or be silent, which load_audio refuses.
    load = lambda path: audio_io.to_mono(audio_io.read_audio(path)[0])

    def music(line: int) -> np.ndarray:
      if "samples" not in records.get(line, {}):
        raise UserError(f"prompt line {line} (a melody line) has no music: see "
                        f"{os.path.join(samples_dir, results_file.NAME)}")
      return load(os.path.join(samples_dir, records[line]["samples"][0]["wav"]))

    # Piece i's lines: its own melody, then the next piece's (`write_melodies`).
    lines = [self.first_melody_line + 2 * i for i in range(len(self.melodies))]
    tunes, rate_hz = [load(path) for path in self.melodies], rates.SOUNDSTREAM_SAMPLE_RATE_HZ
    pitch = pitch_model.BasicPitch()
    result = melody_eval.swapped_melody_adherence([music(line) for line in lines],
                                                  [music(line + 1) for line in lines], tunes,
                                                  rate_hz, pitch)
    result["p_value"] = significance.permutation_p_value(
        result["matched_per_pair"], result["mismatched_per_pair"], paired=True)
    result["real_music"] = melody_eval.melody_adherence(
        [load(path) for path in self.melody_music], tunes, rate_hz, pitch)
    with open(self.path("samples", MELODY_ADHERENCE), "w") as f:
      json.dump(result, f, indent=1)

  def write_melody_retrieval(self) -> None:
    """Melody retrieval of the melody embedder and MuLan on the held-out pieces, as JSON."""
    result = melody_eval.embedder_retrieval(self.path("melody", "export"), self.dataset,
                                            self.data_dir, ("validation",),
                                            self.path("mulan", "export"))
    with open(self.path("melody", MELODY_RETRIEVAL), "w") as f:
      json.dump(result, f, indent=1)


def story_captions(examples: Iterable[dict], dataset: str) -> tuple[str, str]:
  """The story's two segments: the first held-out caption and the first later one of another
  genre, so the label judge's genre over time has a change to follow (eval/story.py).
  examples: the held-out split's, as numpy dicts with "caption" and "genre" (bytes)."""
  first = None  # (caption, genre)
  for example in examples:
    caption, genre = example["caption"].decode(), example["genre"].decode()
    if first is None:
      first = (caption, genre)
    elif genre != first[1]:
      return first[0], caption
  raise UserError(f"{dataset} validation has no two clips of different genres: the story line "
                  f"needs them; build a larger corpus")


def adherence_summary(result: dict) -> str:
  """prompt_adherence.json as text: each figure beside its baselines and its permutation p-value."""
  return (f"prompt adherence, MuLan audio→text among {result['prompts']} prompts "
          f"({result['clips']} clips):\n"
          f"  recall@1          true {result['recall_at_1']:.2f}  shuffled "
          f"{result['recall_at_1_shuffled_prompts']:.2f}  chance {result['chance']:.2f}  "
          f"permutation p = {result['p_value_recall_at_1']:.3g}\n"
          f"  cosine to prompt  true {result['cosine_own_prompt']:.3f}  shuffled "
          f"{result['cosine_shuffled_prompt']:.3f}  permutation p = {result['p_value_cosine']:.3g}")


def melody_summary(result: dict) -> str:
  """melody_adherence.json as text."""
  above = sum(m > s for m, s in zip(result["matched_per_pair"], result["mismatched_per_pair"]))
  real = result["real_music"]
  return (f"melody adherence, share of the melody input's notes among the music's "
          f"{result['top_pitch_classes']} strongest pitch classes, over "
          f"{result['num_pairs']} held-out tunes:\n"
          f"  given that melody {result['matched']:.2f}  given another melody (same text, seed) "
          f"{result['mismatched']:.2f}  ({above} of {result['num_pairs']} higher when given it, "
          f"permutation p = {result['p_value']:.3g})\n"
          f"  the tunes' real music {real['matched']:.2f}  against another tune "
          f"{real['mismatched']:.2f}")


def retrieval_summary(result: dict) -> str:
  """The melody embedder's retrieval.json as text, beside MuLan's audio embedding and chance."""
  embedder, mulan = result["melody_embedder"], result["mulan_audio"]
  views = [view for view in melody_eval.QUERY_VIEWS if view in embedder]
  return (f"melody retrieval, recall@1 of a piece's mix among {embedder['num_candidates']} "
          f"held-out pieces (chance {embedder['chance_recall@1']:.2f}), by query:\n" +
          "\n".join(f"  {view:<8} melody embedder {embedder[view]['recall@1']:.2f}  MuLan audio "
                    f"{mulan[view]['recall@1']:.2f}" for view in views))


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  pipeline = Pipeline(_OUTPUT_DIR.value, QUICK if _QUICK.value else FULL, BinaryRunner())
  result = pipeline.run()
  print("\ntime per step:")
  for name, seconds, reused in pipeline.timings:
    print(f"  {name:<17} {'reused' if reused else f'{seconds:6.0f} s'}")
  print(f"  {'total':<17} {result['seconds']:6.0f} s")
  with open(result["adherence"]) as f:
    print(adherence_summary(json.load(f)))
  with open(pipeline.path("melody", MELODY_RETRIEVAL)) as f:
    print(retrieval_summary(json.load(f)))
  with open(pipeline.path("samples", MELODY_ADHERENCE)) as f:
    print(melody_summary(json.load(f)))
  with open(os.path.join(result["eval"], "eval.json")) as f:
    print(f"musiclm-eval (every metric with its baselines; plots in "
          f"{os.path.join(result['eval'], 'eval.html')}):\n{report.headline(json.load(f))}")
  print(f"music: {result['index']}")


def console_entry_point():
  from musiclm_jax import gin_utils  # pylint: disable=import-outside-toplevel
  gin_utils.run(main, usage="use --output_dir and --quick")


if __name__ == "__main__":
  console_entry_point()
