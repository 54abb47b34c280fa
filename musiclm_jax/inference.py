"""Prompt files in; WAVs, spectrograms, index.html and results.jsonl out (what musiclm-infer runs).

A prompts file has one prompt per line (blank lines and lines starting with
'#' are skipped). A line is either plain text, or a JSON object:

  {"text": "calm piano", "seconds": 20, "seed": 3, "num_samples": 2,
   "temperature": 0.9 | {"semantic": 1.0, "coarse": 0.95, "fine": 0.4},
   "top_k": 250, "top_p": 0.95, "guidance_scale": 3.0,
   "continue_from": "intro.wav", "melody_from": "hum.wav"}
  {"story": [["calm piano", 15], ["the drums come in", 15]], "seed": 1}

Fields left out take `PromptDefaults`' values; a number given for
temperature, top_k or top_p sets all three stages, an object sets the stages
it names; guidance_scale applies to the conditioned stages (semantic, coarse).
"seconds" is the whole output (with a continuation's audio, which is its
start); a story gives seconds per segment instead. continue_from is relative
to the prompts file, and so is melody_from: a hummed, whistled, sung or played
tune the music follows (it needs stages trained with melody, on the paper's
melody tokens or the tune's pitch classes; the page shows it beside the output). Sample i of a prompt uses seed + i.

Every line is checked before any model loads (what needs the models, such
as top_k against a stage's vocabulary, right after they load); any exception
while parsing, checking or generating a line becomes that line's error
record, and the other lines still run.

Nothing finished is lost: each line's record is appended to results.jsonl
(and index.html rebuilt) as soon as its samples are written, and every file
is written under a temporary name and renamed when complete, so the records
describe exactly the WAVs on disk, whenever the run stops. An OUTPUT_DIR that
already holds results is refused unless `if_output_exists` is 'resume' (run
the lines not yet recorded, with the same prompts file and settings) or
'overwrite' (delete the earlier results first).
"""
import codecs
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Callable

from absl import logging
import numpy as np

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax import paths
from musiclm_jax import report_html
from musiclm_jax import results_file
from musiclm_jax.audio import io as audio_io
from musiclm_jax.audio import pitch
from musiclm_jax.audio import validation
from musiclm_jax.errors import UserError

INDEX_FILE = "index.html"
AUDIO_DIR = "audio"
RUN_FILE = "run.json"  # what a resumed run must match: the prompts file's hash and the settings
DONE_FILE = "done"  # in a process's folder of a multi-process run: its share is finished
# The files a sample's record may name (tokens: with save_tokens), relative to the output folder.
_SAMPLE_FILES = ("wav", "spectrogram", "tokens")
_TEMP_SUFFIX = ".tmp"
_FIELDS = ("text", "story", "seconds", "seed", "num_samples", "temperature", "top_k", "top_p",
           "guidance_scale", "continue_from", "melody_from")
# guidance_scale applies where there is conditioning to remove.
_CONDITIONED_STAGES = tuple(name for name, stage in musiclm_spec.STAGE_CONFIGS.items()
                            if stage.condition_kinds)
_IF_OUTPUT_EXISTS = ("refuse", "resume", "overwrite")
_ECHO_CHARS = 200  # what an error record shows of its line
MAX_NUM_SAMPLES = 64  # per line, unless infer's max_num_samples says otherwise
MIN_MELODY_SECONDS = 1.0  # less is not a tune
MIN_VOICED_FRACTION = 0.1  # of a melody's frames with a pitch (pYIN); less has no tune to follow


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
  text: str  # the line as written
  fields: dict  # what the results record shows: text or story, seconds, continue_from
  requests: list[cascade_lib.Request]


def parse_line(text: str, line: int, defaults: PromptDefaults, base_dir: str,
               max_seconds: float, max_text_chars: int,
               max_num_samples: int = MAX_NUM_SAMPLES) -> Prompt:
  """One prompts line -> checked Prompt; UserError (one line) says what is wrong with it."""
  stripped = text.strip()
  if stripped.startswith("{"):
    try:
      fields = json.loads(stripped)
    except json.JSONDecodeError as e:
      raise UserError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
      raise UserError(f"not valid JSON ({str(e).splitlines()[0][:100]})") from None
    except RecursionError:
      raise UserError("not valid JSON (nested too deeply)") from None
    if not isinstance(fields, dict):
      raise UserError("a JSON line must be one object")
  else:
    fields = {"text": stripped}
  unknown = sorted(set(fields) - set(_FIELDS))
  if unknown:
    raise UserError(f"unknown field(s) {_echo(str(unknown))}: use {', '.join(_FIELDS)}")
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
    segments = tuple((t, _float(s, '"story" seconds')) for t, s in story)
  else:
    if not isinstance(fields["text"], str):
      raise UserError('"text" must be a string')
    seconds = fields.get("seconds", defaults.seconds)
    if not _is_number(seconds):
      raise UserError(f'"seconds" must be a number, got {_echo(repr(seconds))}')
    segments = ((fields["text"], _float(seconds, '"seconds"')),)
  seed, num_samples = fields.get("seed", defaults.seed), fields.get("num_samples", defaults.num_samples)
  for name, value in (("seed", seed), ("num_samples", num_samples)):
    if not isinstance(value, int) or isinstance(value, bool):
      raise UserError(f'"{name}" must be an integer, got {_echo(repr(value))}')
  if not 1 <= num_samples <= max_num_samples:
    raise UserError(f'"num_samples" must be in [1, {max_num_samples}], got {_echo(str(num_samples))}: '
                    "split the line or raise max_num_samples")
  sampling = _sampling(fields, defaults)
  continue_from, continuation = fields.get("continue_from"), None
  if continue_from is not None:
    continue_from, continuation = _load_audio_field("continue_from", continue_from, base_dir)
  melody_from, melody = fields.get("melody_from"), None
  if melody_from is not None:
    melody_from, melody = _load_melody(melody_from, base_dir)
  requests = [cascade_lib.Request(segments, seed + i, sampling, continuation, melody)
              for i in range(num_samples)]
  for request in requests:
    cascade_lib.check_request(request, max_seconds, max_text_chars)
  shown = {"text": segments[0][0]} if "text" in fields else {"story": [list(s) for s in segments]}
  shown.update(seconds=requests[0].seconds, continue_from=continue_from, melody_from=melody_from)
  return Prompt(line, text, shown, requests)


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
      raise UserError(f'"{name}" names unknown stage(s) {_echo(str(sorted(set(values) - set(stages))))}: '
                      f"use {', '.join(stages)}")
    for stage, v in values.items():
      ok = (isinstance(v, int) and not isinstance(v, bool)) if name == "top_k" else (
          _is_number(v) or (v is None and name == "guidance_scale"))
      if not ok:
        raise UserError(f'"{name}" must be a number or an object of numbers per stage, '
                        f"got {_echo(repr(v))}")
      per_stage[stage][name] = v if name == "top_k" or v is None else _float(v, f'"{name}"')
  return tuple((stage, decoding.SamplingConfig(**per_stage[stage])) for stage in musiclm_spec.STAGES)


def _load_audio_field(field: str, path, base_dir: str,
                      checks: validation.AudioChecks = validation.AudioChecks()
                      ) -> tuple[str, np.ndarray]:
  """(full path, [samples] at 24 kHz) of the file a line's `field` names, relative to base_dir."""
  if not isinstance(path, str) or not path:
    raise UserError(f'"{field}" must be the path of an audio file')
  full = path if os.path.isabs(path) else os.path.join(base_dir, path)
  if not os.path.isfile(full):
    raise UserError(f"{field} file {_echo(full)} does not exist")
  try:
    return full, audio_io.load_audio(full, cascade_lib.SAMPLE_RATE_HZ, checks)
  except validation.AudioError as e:
    raise UserError(f"{field}: {e}") from None


def _load_melody(path, base_dir: str) -> tuple[str, np.ndarray]:
  """`_load_audio_field` of melody_from; UserError also if it is too short or holds no tune."""
  full, audio = _load_audio_field("melody_from", path, base_dir,
                                  validation.AudioChecks(min_seconds=MIN_MELODY_SECONDS))
  voiced = pitch.voiced_fraction(audio, cascade_lib.SAMPLE_RATE_HZ)
  if voiced < MIN_VOICED_FRACTION:
    raise UserError(f"melody_from {_echo(os.path.basename(full))}: no tune found (pitch in "
                    f"{voiced:.0%} of it): hum, whistle or play a melody")
  return full, audio


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value, name: str) -> float:
  try:
    return float(value)
  except OverflowError:  # an int too large for a float; inf and NaN are refused by check_request
    raise UserError(f"{name} is too large a number") from None


def _echo(text: str) -> str:
  """`text` cut to _ECHO_CHARS characters: error messages and records quote bad input briefly."""
  return text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + f"... ({len(text)} characters)"


def read_lines(prompts_file: str) -> list[tuple[int, str | None]]:
  """(line number, text) of every non-blank, non-comment line; text None if not UTF-8.

  Lines end at \n, \r\n or \r, as editors show them (not at the form feeds
  and Unicode separators str.splitlines also splits at); each line is
  decoded on its own, so one bad byte costs only its line.
  """
  try:
    with open(prompts_file, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UserError(f"cannot read PROMPTS_FILE {prompts_file} ({e.strerror or type(e).__name__}): "
                    "write one prompt per line in a UTF-8 text file") from None
  if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
    raise UserError(f"PROMPTS_FILE {prompts_file} is UTF-16: save it as UTF-8")
  data = data.removeprefix(codecs.BOM_UTF8)
  out = []
  for number, raw in enumerate(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"),
                               start=1):
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError:
      out.append((number, None))
      continue
    if text.strip() and not text.lstrip().startswith("#"):
      out.append((number, text))
  if not out:
    raise UserError(f"PROMPTS_FILE {prompts_file} has no prompts: write one prompt per line")
  return out


def read_prompts(prompts_file: str, defaults: PromptDefaults, max_seconds: float,
                 max_text_chars: int,
                 max_num_samples: int = MAX_NUM_SAMPLES) -> tuple[list[Prompt], list[dict]]:
  """(good prompts, error records) of every non-blank, non-comment line."""
  base_dir = os.path.dirname(os.path.abspath(prompts_file))
  prompts, errors = [], []
  for number, line in read_lines(prompts_file):
    if line is None:
      errors.append(_error_record(number, "", UserError("the line is not UTF-8 text: save the "
                                                        "file as UTF-8")))
      continue
    try:
      prompts.append(parse_line(line, number, defaults, base_dir, max_seconds, max_text_chars,
                                max_num_samples))
    except Exception as e:  # pylint: disable=broad-except  # a bad line must not stop the others
      errors.append(_error_record(number, line, e))
  return prompts, errors


def infer(*, load_cascade: Callable[[], cascade_lib.Cascade], prompts_file: str, output_dir: str,
          defaults: PromptDefaults = PromptDefaults(), batch_size: int = 4,
          max_seconds: float = 300.0, max_text_chars: int = 1000,
          max_num_samples: int = MAX_NUM_SAMPLES,
          if_output_exists: str = "refuse", config_text: str | None = None,
          process_index: int = 0, process_count: int = 1, save_tokens: bool = False) -> dict:
  """Generates every good line of `prompts_file` into `output_dir`.

  With process_count > 1 (one call per process of a pod), process i takes the
  prompt lines at positions i, i + count, ... and makes its own results in
  output_dir/process-i-of-count/ (resumed, refused or overwritten on its own);
  whichever process finishes last writes output_dir/results.jsonl and index.html
  over all of them (sample paths relative to output_dir), so no process waits
  for another.

  Args:
    max_num_samples: most samples one line may ask for.
    if_output_exists: what to do when output_dir holds results: 'refuse'
      (UserError), 'resume' (skip the lines recorded there) or 'overwrite'.
    config_text: written to output_dir/config.gin once output_dir is claimed.
    save_tokens: also write each sample's tokens (`results_file.write_tokens`: the M_T,
      semantic and acoustic codes it was made from) as audio/*.npz, named in its record
      as "tokens", for eval/token_probes.py.

  Returns {'results_path', 'index_path', 'num_ok', 'errors' (one string per
  line that failed in this run)}: output_dir's files, written by now unless
  another process is still running.
  """
  if batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {batch_size}")
  if if_output_exists not in _IF_OUTPUT_EXISTS:
    raise UserError(f"if_output_exists must be one of {', '.join(_IF_OUTPUT_EXISTS)}, "
                    f"got {if_output_exists!r}")
  if not 0 <= process_index < process_count:
    raise UserError(f"process {process_index} of {process_count} does not exist: process_index "
                    "counts from 0 to process_count - 1")
  if not paths.is_local(output_dir):
    raise UserError(f"OUTPUT_DIR {output_dir} is not a local folder: infer renames and appends "
                    "files in place; mount the bucket (gcsfuse) and pass the mount's path")
  output_dir = paths.join(output_dir)  # a file:// URL is a local path
  prompts, errors = read_prompts(prompts_file, defaults, max_seconds, max_text_chars,
                                 max_num_samples)
  if process_count > 1:
    lines = sorted([p.line for p in prompts] + [e["line"] for e in errors])
    mine = set(lines[process_index::process_count])
    prompts = [p for p in prompts if p.line in mine]
    errors = [e for e in errors if e["line"] in mine]
  run = {"prompts_sha256": _sha256(prompts_file), "defaults": dataclasses.asdict(defaults),
         "max_seconds": max_seconds, "max_text_chars": max_text_chars,
         "max_num_samples": max_num_samples}
  if save_tokens:  # only when on, so folders made before the option existed still resume
    run["save_tokens"] = True
  output = _Output(_process_dir(output_dir, process_index, process_count), prompts_file,
                   save_tokens)
  if process_count > 1 and os.path.exists(os.path.join(output_dir, RUN_FILE)):
    raise UserError(f"OUTPUT_DIR {output_dir} holds a one-process run: give a multi-process run "
                    "a new folder")
  done = output.claim(if_output_exists, run, config_text)
  prompts = [p for p in prompts if p.line not in done]
  failed = [e for e in errors if e["line"] not in done]
  for error in failed:
    output.add(error)
  cascade = load_cascade() if prompts else None
  runnable = []
  for prompt in prompts:
    try:
      for request in prompt.requests:
        cascade.check_supported(request)
      runnable.append(prompt)
    except Exception as e:  # pylint: disable=broad-except
      failed.append(output.add(_error_record(prompt.line, prompt.text, e)))
  num_ok = _generate(cascade, runnable, batch_size, output, failed)
  for error in sorted(failed, key=lambda e: e["line"]):
    logging.error("%s line %d: %s", prompts_file, error["line"], error["error"])
  if process_count > 1:
    output.mark_done()
    _merge_processes(output_dir, prompts_file, process_count)
  results_path = os.path.join(output_dir, results_file.NAME)
  return {"results_path": results_path, "index_path": os.path.join(output_dir, INDEX_FILE),
          "num_ok": num_ok,
          "errors": [f"line {e['line']}: {e['error']}" for e in sorted(failed, key=lambda e: e["line"])]}


def _generate(cascade: cascade_lib.Cascade, prompts: list[Prompt], batch_size: int,
              output: "_Output", failed: list[dict]) -> int:
  """Runs the batches; records each line when its last sample is written. Returns lines done.

  A batch holds requests of one duration and kind of sampling knobs (their
  values may differ: `cascade.plan_batches`), possibly of several lines; an exception in it fails those lines and the others go on.
  """
  requests = [(p, i) for p in prompts for i in range(len(p.requests))]
  samples = {p.line: [None] * len(p.requests) for p in prompts}
  bad_lines, num_ok = set(), 0
  start = time.perf_counter()
  try:
    for batch in cascade_lib.plan_batches([p.requests[i] for p, i in requests], batch_size):
      batch = [index for index in batch if requests[index][0].line not in bad_lines]
      if not batch:
        continue
      try:
        generations = list(cascade.iter_generate([requests[k][0].requests[requests[k][1]]
                                                  for k in batch], batch_size, checked=True))
      except Exception as e:  # pylint: disable=broad-except
        for prompt in {requests[k][0].line: requests[k][0] for k in batch}.values():
          bad_lines.add(prompt.line)
          output.discard(samples.pop(prompt.line))
          failed.append(output.add(_error_record(prompt.line, prompt.text, e)))
        continue
      for k, generation in ((batch[j], g) for j, g in generations):
        prompt, i = requests[k]
        samples[prompt.line][i] = output.write_sample(prompt, i, generation)
        logging.info("line %d sample %d done (%.1f s since start)", prompt.line, i,
                     time.perf_counter() - start)
        if all(samples[prompt.line]):
          record = _record(prompt, output.publish(samples.pop(prompt.line)), cascade, batch_size)
          if prompt.requests[0].melody is not None:
            record["melody"] = output.write_melody(prompt.line, prompt.requests[0].melody)
          output.add(record)
          num_ok += 1
  finally:  # Ctrl-C, a full disk: unfinished lines leave no files behind
    for unfinished in samples.values():
      output.discard(unfinished)
  return num_ok


def _process_dir(output_dir: str, process_index: int, process_count: int) -> str:
  """Where a process writes: output_dir itself when it is the only one."""
  if process_count == 1:
    return output_dir
  return os.path.join(output_dir, f"process-{process_index}-of-{process_count}")


def _merge_processes(output_dir: str, prompts_file: str, process_count: int) -> None:
  """output_dir's results.jsonl and index.html over every process's, once all are done."""
  folders = [_process_dir(output_dir, i, process_count) for i in range(process_count)]
  if not all(os.path.exists(os.path.join(f, DONE_FILE)) for f in folders):
    return  # the last process to finish merges
  records = []
  for folder in folders:
    prefix = os.path.basename(folder)
    for record in results_file.read(folder, "process"):
      for sample in record.get("samples", ()):
        sample.update({key: f"{prefix}/{sample[key]}" for key in _SAMPLE_FILES if key in sample})
      records.append(record)
  records.sort(key=lambda r: r["line"])
  # Two processes finishing together both merge: each writes its own temporary file.
  temp = f"{_TEMP_SUFFIX}.{os.getpid()}"
  with _writing(output_dir):
    with open(os.path.join(output_dir, results_file.NAME) + temp, "w", encoding="utf-8") as f:
      f.writelines(map(_json_line, records))
    os.replace(os.path.join(output_dir, results_file.NAME) + temp, os.path.join(output_dir, results_file.NAME))
    report_html.write_index(os.path.join(output_dir, INDEX_FILE) + temp, prompts_file, records)
    os.replace(os.path.join(output_dir, INDEX_FILE) + temp, os.path.join(output_dir, INDEX_FILE))


def _error_record(line: int, text: str, error: BaseException) -> dict:
  """The one shape of a failed line's record; unexpected exceptions keep their type (and traceback in the log)."""
  if isinstance(error, UserError):
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
  else:
    logging.exception("line %d failed", line)
    message = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
  return {"line": line, "prompt": _echo(text.strip()), "error": _echo(message)}


def _record(prompt: Prompt, samples: list[dict], cascade: cascade_lib.Cascade,
            batch_size: int) -> dict:
  """Everything needed to generate the line again."""
  sampling = {stage: dataclasses.asdict(config) for stage, config in prompt.requests[0].sampling}
  return {"line": prompt.line, **prompt.fields, "seed": prompt.requests[0].seed,
          "num_samples": len(prompt.requests), "sampling": sampling, "samples": samples,
          "sample_rate_hz": cascade_lib.SAMPLE_RATE_HZ,
          "windows": dataclasses.asdict(cascade.windows), "use_cache": cascade.use_cache,
          "decode_levels": cascade.decode_levels,
          "max_length": cascade.max_length, "batch_size": batch_size, "sources": cascade.sources}


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


class _Output:
  """OUTPUT_DIR: claimed once, then grown one finished line at a time.

  A file is written under a temporary name and renamed when complete; a
  record is appended only after its files are in place. Filesystem errors
  (disk full, read-only, a file where the folder should be) are UserErrors
  that say how to resume.
  """

  def __init__(self, output_dir: str, prompts_file: str, save_tokens: bool = False):
    self.output_dir = output_dir
    self.prompts_file = prompts_file
    self.save_tokens = save_tokens
    self.results_path = os.path.join(output_dir, results_file.NAME)
    self.index_path = os.path.join(output_dir, INDEX_FILE)
    self.records: list[dict] = []

  def claim(self, if_output_exists: str, run: dict, config_text: str | None) -> set[int]:
    """Checks and prepares the folder; returns the lines already recorded (when resuming)."""
    names = (results_file.NAME, INDEX_FILE, AUDIO_DIR, RUN_FILE, DONE_FILE)
    if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
      raise UserError(f"OUTPUT_DIR {self.output_dir} is a file, not a folder: choose a folder")
    used = os.path.isdir(self.output_dir) and any(
        os.path.exists(os.path.join(self.output_dir, n)) for n in names)
    with _writing(self.output_dir):
      if used and if_output_exists == "refuse":
        raise UserError(f"OUTPUT_DIR {self.output_dir} already holds results: choose a new folder, "
                        "or set IF_OUTPUT_EXISTS='resume' (run the lines not recorded yet) or "
                        "'overwrite'")
      if used and if_output_exists == "overwrite":
        for name in names:
          path = os.path.join(self.output_dir, name)
          if os.path.isdir(path):
            shutil.rmtree(path)
          elif os.path.exists(path):
            os.remove(path)
      if used and if_output_exists == "resume":
        self._load_for_resume(run)
      os.makedirs(os.path.join(self.output_dir, AUDIO_DIR), exist_ok=True)
      if os.path.exists(os.path.join(self.output_dir, DONE_FILE)):
        os.remove(os.path.join(self.output_dir, DONE_FILE))  # resumed: running again
      self._forget_unrecorded_files()
      self._write_atomically(os.path.join(self.output_dir, RUN_FILE), json.dumps(run, indent=2))
      if config_text is not None:
        self._write_atomically(os.path.join(self.output_dir, "config.gin"), config_text)
      self._write_atomically(self.results_path, "".join(_json_line(r) for r in self.records))
      self._write_index()
    return {r["line"] for r in self.records}

  def _load_for_resume(self, run: dict) -> None:
    try:
      with open(os.path.join(self.output_dir, RUN_FILE)) as f:
        previous = json.load(f)
    except (OSError, ValueError):
      previous = None
    if previous != run:
      raise UserError(f"cannot resume in OUTPUT_DIR {self.output_dir}: it was made from another "
                      "prompts file or other settings; use a new folder or IF_OUTPUT_EXISTS='overwrite'")
    if os.path.exists(self.results_path):
      with open(self.results_path, encoding="utf-8") as f:
        for line in f:
          # A line cut short by a crash (or a full disk) is dropped: its line runs again.
          if line.endswith("\n"):
            try:
              self.records.append(json.loads(line))
            except ValueError:
              pass

  def _forget_unrecorded_files(self) -> None:
    """Removes temporary files and any audio no record names: the records describe the folder."""
    recorded = {os.path.join(self.output_dir, s[key]) for r in self.records
                for s in tuple(r.get("samples", ())) + ((r["melody"],) if "melody" in r else ())
                for key in _SAMPLE_FILES if key in s}
    for path in glob.glob(os.path.join(self.output_dir, AUDIO_DIR, "*")):
      if os.path.basename(path).startswith("line") and path not in recorded:
        os.remove(path)

  def add(self, record: dict) -> dict:
    """Appends `record` to results.jsonl and rebuilds index.html; returns it."""
    with _writing(self.results_path):
      with open(self.results_path, "a", encoding="utf-8") as f:
        f.write(_json_line(record))
        f.flush()
        os.fsync(f.fileno())
      self.records.append(record)
      self._write_index()
    return record

  def mark_done(self) -> None:
    """Says this folder's lines are all recorded (a process's share of a multi-process run)."""
    with _writing(self.output_dir):
      self._write_atomically(os.path.join(self.output_dir, DONE_FILE), "")

  def write_sample(self, prompt: Prompt, index: int, generation: cascade_lib.Generation) -> dict:
    """Writes a sample's WAV and spectrogram (and tokens) under temporary names; `publish`
    renames them."""
    name = f"line{prompt.line:04d}_sample{index}"
    wav, png = os.path.join(AUDIO_DIR, name + ".wav"), os.path.join(AUDIO_DIR, name + ".png")
    sample = {"seed": prompt.requests[index].seed, "wav": wav, "spectrogram": png,
              "num_audio_samples": int(generation.audio.shape[0]),
              "batch_seconds": round(generation.batch_seconds, 3)}
    if self.save_tokens:
      sample["tokens"] = os.path.join(AUDIO_DIR, name + ".npz")
    try:
      with _writing(os.path.join(self.output_dir, wav)):
        audio_io.save_wav(self._temp(wav), generation.audio, cascade_lib.SAMPLE_RATE_HZ)
        report_html.save_spectrogram(self._temp(png), generation.audio, cascade_lib.SAMPLE_RATE_HZ)
        if self.save_tokens:
          with open(self._temp(sample["tokens"]), "wb") as f:
            results_file.write_tokens(f, generation.mulan_text, generation.semantic,
                                      generation.acoustic)
    except BaseException:
      self.discard([sample])  # no half-written file stays behind
      raise
    return sample

  def write_melody(self, line: int, audio: np.ndarray) -> dict:
    """Writes a line's melody input as a WAV and spectrogram for the page; returns their paths."""
    name = os.path.join(AUDIO_DIR, f"line{line:04d}_melody")
    files = {"wav": name + ".wav", "spectrogram": name + ".png"}
    with _writing(os.path.join(self.output_dir, files["wav"])):
      audio_io.save_wav(self._temp(files["wav"]), audio, cascade_lib.SAMPLE_RATE_HZ)
      report_html.save_spectrogram(self._temp(files["spectrogram"]), audio,
                                   cascade_lib.SAMPLE_RATE_HZ)
    return self.publish([files])[0]

  def publish(self, samples: list[dict]) -> list[dict]:
    for sample in samples:
      for key in (key for key in _SAMPLE_FILES if key in sample):
        with _writing(os.path.join(self.output_dir, sample[key])):
          os.replace(self._temp(sample[key]), os.path.join(self.output_dir, sample[key]))
    return samples

  def discard(self, samples: list[dict | None]) -> None:
    for sample in filter(None, samples):
      for key in (key for key in _SAMPLE_FILES if key in sample):
        if os.path.exists(self._temp(sample[key])):
          os.remove(self._temp(sample[key]))

  def _temp(self, relative: str) -> str:
    return os.path.join(self.output_dir, relative + _TEMP_SUFFIX)

  def _write_index(self) -> None:
    records = sorted(self.records, key=lambda r: r["line"])
    temp = self.index_path + _TEMP_SUFFIX
    report_html.write_index(temp, self.prompts_file, records)
    os.replace(temp, self.index_path)

  def _write_atomically(self, path: str, text: str) -> None:
    with open(path + _TEMP_SUFFIX, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(path + _TEMP_SUFFIX, path)

@contextlib.contextmanager
def _writing(path: str):
  """Turns an OSError inside the block into a one-line UserError that says how to go on."""
  try:
    yield
  except OSError as e:
    raise UserError(f"cannot write {e.filename or path} ({e.strerror or e}): free space or fix "
                    "the folder, then run again with IF_OUTPUT_EXISTS='resume'") from None


def _json_line(record: dict) -> str:
  return json.dumps(record, allow_nan=False) + "\n"
