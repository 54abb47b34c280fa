"""musiclm-infer loses nothing: per-line isolation, records as it goes, protected output folders."""
import errno
import glob
import json
import os

import numpy as np
import pytest

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import inference
from musiclm_jax import results_file
from musiclm_jax.audio import io as audio_io
from musiclm_jax.errors import UserError
from test_cascade import SECONDS, make_cascade

DEFAULTS = inference.PromptDefaults(seconds=SECONDS)


def _infer(tmp_path, lines, load_cascade=make_cascade, **kwargs):
  prompts = tmp_path / "prompts.txt"
  if not prompts.exists() or lines is not None:
    prompts.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines or ()))
  return inference.infer(load_cascade=load_cascade, prompts_file=str(prompts),
                         output_dir=str(tmp_path / "out"), defaults=DEFAULTS, **kwargs)


def _records(tmp_path) -> dict[int, dict]:
  def no_nan(name):
    raise AssertionError(f"results.jsonl holds {name}, which is not JSON")
  with open(tmp_path / "out" / "results.jsonl") as f:
    records = [json.loads(line, parse_constant=no_nan) for line in f]
  assert len({r["line"] for r in records}) == len(records), "a line is recorded twice"
  return {r["line"]: r for r in records}


def _files_on_disk(tmp_path) -> set[str]:
  out = tmp_path / "out"
  return {os.path.relpath(p, out) for p in glob.glob(str(out / "audio" / "*"))}


def _files_recorded(tmp_path) -> set[str]:
  return {s[key] for r in _records(tmp_path).values() for s in r.get("samples", ())
          for key in ("wav", "spectrogram", "tokens") if key in s}


def _never_load():
  raise AssertionError("loaded the cascade although no line can run")


class _FailingCascade(cascade_lib.Cascade):
  """The tiny cascade, but a batch raises `error` when `fails(batch requests, call number)`."""

  def __init__(self, error: BaseException, fails):
    base = make_cascade()
    super().__init__(base.conditioning_tokenizer, base.acoustic_tokenizer, *base.stages.values(),
                     semantic_tokenizer=base.semantic_tokenizer, windows=base.windows)
    self.error, self.fails, self.calls = error, fails, 0

  def _generate_batch(self, requests, batch_size):
    self.calls += 1
    if self.fails(requests, self.calls):
      raise self.error
    return super()._generate_batch(requests, batch_size)


def test_overflowing_top_k_fails_its_line_only(tmp_path):
  result = _infer(tmp_path, ["calm piano", {"text": "drums", "top_k": 99999999999}, "soft strings"])
  records = _records(tmp_path)
  assert sorted(records) == [1, 2, 3] and result["num_ok"] == 2
  assert "top_k 99999999999 of the semantic stage exceeds its vocabulary" in records[2]["error"]
  assert [len(records[n]["samples"]) for n in (1, 3)] == [1, 1]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)


def test_an_exception_while_generating_fails_its_line_only(tmp_path):
  error = RuntimeError("device lost\nmore detail")
  boom = lambda requests, call: requests[0].segments[0][0] == "boom"
  _infer(tmp_path, ["calm piano", "boom", "soft strings"],
         load_cascade=lambda: _FailingCascade(error, boom), batch_size=1)
  records = _records(tmp_path)
  assert records[2]["error"] == "RuntimeError: device lost"
  assert "samples" in records[1] and "samples" in records[3]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)


def test_non_finite_huge_and_malformed_values_are_line_errors(tmp_path):
  lines = [
      '{"text": "a", "seconds": Infinity}',
      '{"text": "a", "seconds": 1e400}',
      '{"story": [["a", 1], ["b", Infinity]]}',
      '{"text": "a", "seconds": 1' + "0" * 400 + "}",
      '{"text": "a", "seed": ' + "9" * 5000 + "}",
      '{"text": "a", "temperature": NaN}',
      '{"text": "a", "guidance_scale": NaN}',
      '{"text": "a", "num_samples": 10000}',
      '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}",
      '{"text": "a", "colour": "' + "x" * 1_000_000 + '"}',
  ]
  (tmp_path / "prompts.txt").write_bytes("\n".join(lines).encode() + b"\ncalm \xff piano\n")
  result = _infer(tmp_path, None, load_cascade=_never_load)
  assert result["num_ok"] == 0
  errors = {n: r["error"] for n, r in _records(tmp_path).items()}
  assert sorted(errors) == list(range(1, 12))
  for n in (1, 2, 3):
    assert errors[n] == "duration must be a finite number of seconds, got inf", n
  assert errors[4] == '"seconds" is too large a number'
  assert "not valid JSON" in errors[5]
  assert "temperature of the semantic stage must be a finite number, got nan" == errors[6]
  assert "guidance_scale of the semantic stage must be a finite number, got nan" == errors[7]
  assert errors[8].startswith('"num_samples" must be in [1, 64], got 10000')
  assert errors[9] == "not valid JSON (nested too deeply)"
  assert "unknown field(s) ['colour']" in errors[10]
  assert errors[11] == "the line is not UTF-8 text: save the file as UTF-8"
  for path in ("results.jsonl", "index.html"):  # a 1 MB line is not copied
    assert os.path.getsize(tmp_path / "out" / path) < 20_000


def test_lines_end_where_an_editor_ends_them(tmp_path):
  # U+2028 and a form feed split lines for str.splitlines, not for an editor; \r does.
  (tmp_path / "prompts.txt").write_bytes(b'\xef\xbb\xbf{"text": "a\xe2\x80\xa8b", "seconds": 0}\r'
                                         b'{"text": "c",\x0c"seconds": 0}\r\n')
  _infer(tmp_path, None, load_cascade=_never_load)
  assert sorted(_records(tmp_path)) == [1, 2]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1)])
def test_an_interrupted_run_records_exactly_the_wavs_on_disk_and_resumes(tmp_path, error):
  lines = ["calm piano", "soft strings", "loud drums", "quiet harp"]
  with pytest.raises(type(error)):
    _infer(tmp_path, lines, load_cascade=lambda: _FailingCascade(error, lambda _, call: call == 3),
           batch_size=1)
  assert sorted(_records(tmp_path)) == [1, 2]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)
  assert len(_files_on_disk(tmp_path)) == 4  # a WAV and a spectrogram per finished line
  first_wav = (tmp_path / "out" / _records(tmp_path)[1]["samples"][0]["wav"]).read_bytes()

  result = _infer(tmp_path, None, if_output_exists="resume", batch_size=1)
  assert result["num_ok"] == 2  # lines 3 and 4; 1 and 2 were kept
  assert sorted(_records(tmp_path)) == [1, 2, 3, 4]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)
  assert (tmp_path / "out" / _records(tmp_path)[1]["samples"][0]["wav"]).read_bytes() == first_wav
  assert (tmp_path / "out" / "index.html").read_text().count("<h3>line") == 4


class _RecordingCascade(cascade_lib.Cascade):
  """The tiny cascade, keeping every Generation it returns by its request's first text and seed."""

  def __init__(self):
    base = make_cascade()
    super().__init__(base.conditioning_tokenizer, base.acoustic_tokenizer, *base.stages.values(),
                     semantic_tokenizer=base.semantic_tokenizer, windows=base.windows)
    self.generations = {}

  def _generate_batch(self, requests, batch_size):
    generations = super()._generate_batch(requests, batch_size)
    for request, generation in zip(requests, generations):
      self.generations[request.segments[0][0], request.seed] = generation
    return generations


def test_save_tokens_writes_each_samples_tokens_named_in_its_record_and_resumes(tmp_path):
  cascade = _RecordingCascade()
  lines = ["calm piano", {"text": "soft strings", "num_samples": 2, "seed": 5}, "loud drums"]
  with pytest.raises(KeyboardInterrupt):
    _infer(tmp_path, lines, load_cascade=lambda: _FailingCascade(
        KeyboardInterrupt(), lambda requests, _: requests[0].segments[0][0] == "loud drums"),
        batch_size=1, save_tokens=True)
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)
  with pytest.raises(UserError, match="cannot resume"):  # the other lines would have no tokens
    _infer(tmp_path, None, if_output_exists="resume", batch_size=1)
  _infer(tmp_path, None, load_cascade=lambda: cascade, if_output_exists="resume", batch_size=1,
         save_tokens=True)
  records = _records(tmp_path)
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)
  assert [len(r["samples"]) for r in records.values()] == [1, 2, 1]
  generation = cascade.generations["loud drums", 0]
  tokens = results_file.read_tokens(str(tmp_path / "out"), records[3]["samples"][0]["tokens"])
  np.testing.assert_array_equal(tokens["semantic"], generation.semantic)
  np.testing.assert_array_equal(tokens["acoustic"], generation.acoustic)
  np.testing.assert_array_equal(
      tokens["mulan_text"], cascade.conditioning_tokenizer.text_tokens(["loud drums"]))
  assert tokens["acoustic"].shape == (2 * len(tokens["semantic"]), 12)
  for sample in records[2]["samples"]:
    assert results_file.read_tokens(str(tmp_path / "out"), sample["tokens"])["semantic"].shape == (
        generation.semantic.shape)


def test_without_save_tokens_no_tokens_are_written(tmp_path):
  _infer(tmp_path, ["calm piano"])
  assert "tokens" not in _records(tmp_path)[1]["samples"][0]
  assert not glob.glob(str(tmp_path / "out" / "audio" / "*.npz"))


def test_a_used_output_dir_is_refused_untouched_then_resumed_or_overwritten(tmp_path):
  _infer(tmp_path, ["calm piano", "soft strings"], config_text="# first\n")
  out = tmp_path / "out"
  before = {p: open(p, "rb").read() for p in glob.glob(str(out / "**"), recursive=True)
            if os.path.isfile(p)}
  with pytest.raises(UserError, match="already holds results: choose a new folder, or set "
                                      "IF_OUTPUT_EXISTS='resume'"):
    _infer(tmp_path, ["loud drums"], config_text="# second\n")
  after = {p: open(p, "rb").read() for p in glob.glob(str(out / "**"), recursive=True)
           if os.path.isfile(p)}
  assert after == before
  with pytest.raises(UserError, match="cannot resume .* another prompts file"):
    _infer(tmp_path, None, if_output_exists="resume")  # prompts.txt now holds "loud drums"
  _infer(tmp_path, None, if_output_exists="overwrite")
  assert [r["text"] for r in _records(tmp_path).values()] == ["loud drums"]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
  (tmp_path / "out").write_text("not a folder")
  with pytest.raises(UserError, match="is a file, not a folder"):
    _infer(tmp_path, ["calm piano"], load_cascade=_never_load)


def test_a_full_disk_is_one_line_and_resumable(tmp_path, monkeypatch):
  real_save_wav, calls = audio_io.save_wav, []

  def save_wav(path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:
      with open(path, "wb") as f:  # half a file, then the disk is full
        f.write(b"RIFF")
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    real_save_wav(path, *args, **kwargs)

  monkeypatch.setattr(audio_io, "save_wav", save_wav)
  with pytest.raises(UserError) as e:
    _infer(tmp_path, ["calm piano", "soft strings", "loud drums"], batch_size=1)
  assert len(str(e.value).splitlines()) == 1
  assert "No space left on device" in str(e.value) and "IF_OUTPUT_EXISTS='resume'" in str(e.value)
  assert sorted(_records(tmp_path)) == [1]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)  # the half WAV is gone

  monkeypatch.setattr(audio_io, "save_wav", real_save_wav)
  _infer(tmp_path, None, if_output_exists="resume", batch_size=1)
  assert sorted(_records(tmp_path)) == [1, 2, 3]
  assert _files_on_disk(tmp_path) == _files_recorded(tmp_path)


def test_each_request_is_checked_once_and_errors_have_one_shape(tmp_path, monkeypatch):
  calls = []
  real_check, real_supported = cascade_lib.check_request, cascade_lib.Cascade.check_supported
  monkeypatch.setattr(cascade_lib, "check_request",
                      lambda request, *a: calls.append("request") or real_check(request, *a))
  monkeypatch.setattr(cascade_lib.Cascade, "check_supported",
                      lambda self, r: calls.append("supported") or real_supported(self, r))
  _infer(tmp_path, [{"text": "calm piano", "num_samples": 2}, {"text": "a", "seconds": 0},
                    {"text": "drums", "top_k": 99999999999}])
  # Lines 1 (two samples), 2 and 3 are checked when parsed; 1 and 3 against the cascade.
  assert sorted(calls) == ["request"] * 4 + ["supported"] * 3
  errors = [r for r in _records(tmp_path).values() if "error" in r]
  assert [set(r) for r in errors] == [{"line", "prompt", "error"}] * 2
