"""Prompt files in; WAVs, spectrograms, index.html and results.jsonl out (what musiclm-infer runs).

A prompts file has one prompt per line (blank lines and lines starting with
'#' are skipped). A line is either plain text, or a JSON object:

  {"text": "calm piano", "seconds": 20, "seed": 3, "num_samples": 2,
   "temperature": 0.9 | {"semantic": 1.0, "coarse": 0.95, "fine": 0.4},
   "top_k": 250, "top_p": 0.95, "guidance_scale": 3.0,
   "continue_from": "hum.wav"}
  {"story": [["calm piano", 15], ["the drums come in", 15]], "seed": 1}

Fields left out take `PromptDefaults`' values; a number given for
temperature, top_k or top_p sets all three stages, an object sets the stages
it names; guidance_scale applies to the conditioned stages (semantic, coarse).
"seconds" is the whole output (with a continuation's audio, which is its
start); a story gives seconds per segment instead. continue_from is relative
to the prompts file. Sample i of a prompt uses seed + i.

Every line is checked before any model loads; a bad line is reported in
results.jsonl and index.html and the others still run.
"""
import dataclasses
import json
import os
import time
from typing import Callable

from absl import logging
import numpy as np

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax import report_html
from musiclm_jax.audio import io as audio_io
from musiclm_jax.audio import validation
from musiclm_jax.errors import UserError

RESULTS_FILE = "results.jsonl"
INDEX_FILE = "index.html"
AUDIO_DIR = "audio"
_FIELDS = ("text", "story", "seconds", "seed", "num_samples", "temperature", "top_k", "top_p",
           "guidance_scale", "continue_from")
# guidance_scale applies where there is conditioning to remove.
_CONDITIONED_STAGES = tuple(name for name, stage in musiclm_spec.STAGE_CONFIGS.items()
                            if stage.condition_kinds)


@dataclasses.dataclass(frozen=True)
class PromptDefaults:
  """What a prompt line leaves out (gin: inference.PromptDefaults)."""
  seconds: float = 10.0
  seed: int = 0
  num_samples: int = 1
  semantic_temperature: float = musiclm_spec.PAPER_TEMPERATURES["semantic"]
  coarse_temperature: float = musiclm_spec.PAPER_TEMPERATURES["coarse"]
  fine_temperature: float = musiclm_spec.PAPER_TEMPERATURES["fine"]
  top_k: int = 0
  top_p: float = 1.0
  guidance_scale: float | None = None


@dataclasses.dataclass
class Prompt:
  """One parsed line: a request per sample."""
  line: int
  fields: dict  # what the results record shows: text or story, seconds, continue_from
  requests: list[cascade_lib.Request]


def parse_line(text: str, line: int, defaults: PromptDefaults, base_dir: str,
               max_seconds: float, max_text_chars: int) -> Prompt:
  """One prompts line -> Prompt; UserError (one line) says what is wrong with it."""
  stripped = text.strip()
  if stripped.startswith("{"):
    try:
      fields = json.loads(stripped)
    except json.JSONDecodeError as e:
      raise UserError(f"not valid JSON ({e.msg} at column {e.colno})") from None
  else:
    fields = {"text": stripped}
  unknown = sorted(set(fields) - set(_FIELDS))
  if unknown:
    raise UserError(f"unknown field(s) {unknown}: use {', '.join(_FIELDS)}")
  if ("text" in fields) == ("story" in fields):
    raise UserError('a prompt needs "text" or "story" (a list of [text, seconds]), not both')
  if "story" in fields:
    if "seconds" in fields:
      raise UserError('a story gives seconds per segment: drop "seconds"')
    story = fields["story"]
    if not isinstance(story, list) or not story or not all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and _is_number(s[1])
        for s in story):
      raise UserError('"story" must be a non-empty list of [text, seconds] pairs')
    segments = tuple((t, float(s)) for t, s in story)
  else:
    if not isinstance(fields["text"], str):
      raise UserError('"text" must be a string')
    seconds = fields.get("seconds", defaults.seconds)
    if not _is_number(seconds):
      raise UserError(f'"seconds" must be a number, got {seconds!r}')
    segments = ((fields["text"], float(seconds)),)
  seed, num_samples = fields.get("seed", defaults.seed), fields.get("num_samples", defaults.num_samples)
  for name, value in (("seed", seed), ("num_samples", num_samples)):
    if not isinstance(value, int) or isinstance(value, bool):
      raise UserError(f'"{name}" must be an integer, got {value!r}')
  if num_samples < 1:
    raise UserError(f'"num_samples" must be >= 1, got {num_samples}')
  sampling = _sampling(fields, defaults)
  continue_from, continuation = fields.get("continue_from"), None
  if continue_from is not None:
    continue_from, continuation = _load_continuation(continue_from, base_dir)
  requests = [cascade_lib.Request(segments, seed + i, sampling, continuation)
              for i in range(num_samples)]
  for request in requests:
    cascade_lib.check_request(request, max_seconds, max_text_chars)
  shown = {"text": segments[0][0]} if "text" in fields else {"story": [list(s) for s in segments]}
  shown.update(seconds=requests[0].seconds, continue_from=continue_from)
  return Prompt(line, shown, requests)


def _sampling(fields: dict, defaults: PromptDefaults) -> tuple:
  """((stage, SamplingConfig), ...) from the line's overrides and the defaults."""
  per_stage = {stage: {"temperature": getattr(defaults, f"{stage}_temperature"),
                       "top_k": defaults.top_k, "top_p": defaults.top_p,
                       "guidance_scale": defaults.guidance_scale if stage in _CONDITIONED_STAGES
                       else None}
               for stage in musiclm_spec.STAGES}
  for name in ("temperature", "top_k", "top_p", "guidance_scale"):
    if name not in fields:
      continue
    value = fields[name]
    stages = _CONDITIONED_STAGES if name == "guidance_scale" else musiclm_spec.STAGES
    values = value if isinstance(value, dict) else {stage: value for stage in stages}
    if set(values) - set(stages):
      raise UserError(f'"{name}" names unknown stage(s) {sorted(set(values) - set(stages))}: '
                      f"use {', '.join(stages)}")
    for stage, v in values.items():
      ok = (isinstance(v, int) and not isinstance(v, bool)) if name == "top_k" else (
          _is_number(v) or (v is None and name == "guidance_scale"))
      if not ok:
        raise UserError(f'"{name}" must be a number or an object of numbers per stage, got {v!r}')
      per_stage[stage][name] = v
  return tuple((stage, decoding.SamplingConfig(**per_stage[stage])) for stage in musiclm_spec.STAGES)


def _load_continuation(path, base_dir: str) -> tuple[str, np.ndarray]:
  if not isinstance(path, str) or not path:
    raise UserError('"continue_from" must be the path of an audio file')
  full = path if os.path.isabs(path) else os.path.join(base_dir, path)
  if not os.path.isfile(full):
    raise UserError(f"continue_from file {full} does not exist")
  try:
    return full, audio_io.load_audio(full, cascade_lib.SAMPLE_RATE_HZ)
  except validation.AudioError as e:
    raise UserError(f"continue_from: {e}") from None


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_prompts(prompts_file: str, defaults: PromptDefaults, max_seconds: float,
                 max_text_chars: int) -> tuple[list[Prompt], list[dict]]:
  """(good prompts, error records) of every non-blank, non-comment line."""
  try:
    with open(prompts_file, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"cannot read PROMPTS_FILE {prompts_file} ({type(e).__name__}): write one "
                    "prompt per line in a UTF-8 text file") from None
  numbered = [(n, l) for n, l in enumerate(lines, start=1) if l.strip() and not l.lstrip().startswith("#")]
  if not numbered:
    raise UserError(f"PROMPTS_FILE {prompts_file} has no prompts: write one prompt per line")
  base_dir = os.path.dirname(os.path.abspath(prompts_file))
  prompts, errors = [], []
  for number, line in numbered:
    try:
      prompts.append(parse_line(line, number, defaults, base_dir, max_seconds, max_text_chars))
    except UserError as e:
      errors.append({"line": number, "prompt": line.strip(), "error": str(e).splitlines()[0]})
  return prompts, errors


def infer(*, load_cascade: Callable[[], cascade_lib.Cascade], prompts_file: str, output_dir: str,
          defaults: PromptDefaults = PromptDefaults(), batch_size: int = 4,
          max_seconds: float = 300.0, max_text_chars: int = 1000) -> dict:
  """Generates every good line of `prompts_file` into `output_dir`.

  Returns {'results_path', 'index_path', 'num_ok', 'errors' (one string per bad line)}.
  """
  if batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {batch_size}")
  prompts, errors = read_prompts(prompts_file, defaults, max_seconds, max_text_chars)
  cascade = load_cascade() if prompts else None
  runnable = []
  for prompt in prompts:
    try:
      for request in prompt.requests:
        cascade.check_request(request)
      runnable.append(prompt)
    except UserError as e:
      errors.append({"line": prompt.line, "prompt": json.dumps(prompt.fields), "error": str(e)})
  os.makedirs(os.path.join(output_dir, AUDIO_DIR), exist_ok=True)
  requests = [(p, i) for p in runnable for i in range(len(p.requests))]
  samples = {p.line: [None] * len(p.requests) for p in runnable}
  if requests:
    start = time.perf_counter()
    for index, generation in cascade.iter_generate([p.requests[i] for p, i in requests], batch_size):
      prompt, i = requests[index]
      samples[prompt.line][i] = _write_sample(output_dir, prompt, i, generation)
      logging.info("line %d sample %d done (%.1f s since start)", prompt.line, i,
                   time.perf_counter() - start)
  records = [_record(p, samples[p.line], cascade, batch_size) for p in runnable] + errors
  records.sort(key=lambda r: r["line"])
  results_path = os.path.join(output_dir, RESULTS_FILE)
  with open(results_path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  index_path = report_html.write_index(os.path.join(output_dir, INDEX_FILE), prompts_file, records)
  for error in errors:
    logging.error("%s line %d: %s", prompts_file, error["line"], error["error"])
  return {"results_path": results_path, "index_path": index_path, "num_ok": len(runnable),
          "errors": [f"line {e['line']}: {e['error']}" for e in sorted(errors, key=lambda e: e["line"])]}


def _write_sample(output_dir: str, prompt: Prompt, index: int,
                  generation: cascade_lib.Generation) -> dict:
  name = f"line{prompt.line:04d}_sample{index}"
  wav, png = os.path.join(AUDIO_DIR, name + ".wav"), os.path.join(AUDIO_DIR, name + ".png")
  audio_io.save_wav(os.path.join(output_dir, wav), generation.audio, cascade_lib.SAMPLE_RATE_HZ)
  report_html.save_spectrogram(os.path.join(output_dir, png), generation.audio,
                               cascade_lib.SAMPLE_RATE_HZ)
  return {"seed": prompt.requests[index].seed, "wav": wav, "spectrogram": png,
          "num_audio_samples": int(generation.audio.shape[0]),
          "batch_seconds": round(generation.batch_seconds, 3)}


def _record(prompt: Prompt, samples: list[dict], cascade: cascade_lib.Cascade,
            batch_size: int) -> dict:
  """Everything needed to generate the line again."""
  sampling = {stage: dataclasses.asdict(config) for stage, config in prompt.requests[0].sampling}
  return {"line": prompt.line, **prompt.fields, "seed": prompt.requests[0].seed,
          "num_samples": len(prompt.requests), "sampling": sampling, "samples": samples,
          "sample_rate_hz": cascade_lib.SAMPLE_RATE_HZ,
          "windows": dataclasses.asdict(cascade.windows), "use_cache": cascade.use_cache,
          "max_length": cascade.max_length, "batch_size": batch_size, "sources": cascade.sources}
