"""musiclm-infer: text in, WAVs + index.html + results.jsonl out, from exports written here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from musiclm_jax import checkpoints
from musiclm_jax import inference
from musiclm_jax.errors import UserError
from musiclm_jax.models import soundstream
from conftest import run_binary
from test_cascade import tiny_stage_lms
from test_multihost import finish, free_port, multiprocess_env
from test_long_generation import TINY_DISCRIMINATORS, TINY_CODEC, tiny_soundstream_params

STAGE_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax import musiclm_spec
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
MODEL = @lm.DecoderOnlyLM()
lm.DecoderOnlyLM:
  transformer_config = @transformer.TransformerConfig()
  stage = @musiclm_spec.{stage}_stage()
transformer.TransformerConfig:
  d_model = 16
  num_layers = 1
  num_heads = 2
  d_ff = 32
"""
SOUNDSTREAM_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax.models import discriminators
from musiclm_jax.models import soundstream
MODEL = @soundstream.SoundStreamModel()
soundstream.SoundStreamModel:
  config = @soundstream.SoundStreamConfig()
  discriminator_config = @discriminators.DiscriminatorConfig()
soundstream.SoundStreamConfig:
  channels = {c.channels}
  embedding_dim = {c.embedding_dim}
  dilations = {c.dilations}
  num_levels = {c.num_levels}
  codebook_size = {c.codebook_size}
discriminators.DiscriminatorConfig:
  stft_fft_sizes = {d.stft_fft_sizes}
  stft_channels = {d.stft_channels}
  wave_scales = {d.wave_scales}
  wave_channels = {d.wave_channels}
  wave_max_channels = {d.wave_max_channels}
  wave_downsamples = {d.wave_downsamples}
"""
# MuLan and w2v-BERT are stood in for by tests/fake_tokenizers.py; windows as in test_cascade.
FAKES_GIN = """
from __gin__ import dynamic_registration
import fake_tokenizers
from musiclm_jax import cascade
cascade.load_musiclm:
  conditioning_loader = @fake_tokenizers.load_fake_conditioning
  semantic_loader = @fake_tokenizers.load_fake_semantic
cascade.Windows:
  semantic_window_seconds = 0.4
  semantic_stride_seconds = 0.2
  coarse_window_seconds = 0.16
  coarse_stride_seconds = 0.08
  fine_window_seconds = 0.08
  fine_stride_seconds = 0.04
  decode_window_seconds = 0.2
  decode_context_seconds = 0.2
"""


def _write_export(folder, params, config: str) -> str:
  os.makedirs(folder)
  config_path = os.path.join(folder, "source.gin")
  with open(config_path, "w") as f:
    f.write(config)
  checkpoints.export_params(params, folder, gin_config_path=config_path)
  return folder


@pytest.fixture(scope="module")
def flags(tmp_path_factory) -> list[str]:
  """--gin flags naming a full set of tiny exports (stages, SoundStream) and fake tokenizers."""
  root = tmp_path_factory.mktemp("exports")
  macros = {}
  for stage, (_, params) in tiny_stage_lms().items():
    macros[f"{stage.upper()}_EXPORT_DIR"] = _write_export(
        str(root / stage), params, STAGE_GIN.format(stage=stage))
  codec = soundstream.SoundStreamModel(TINY_CODEC, TINY_DISCRIMINATORS)
  macros["SOUNDSTREAM_EXPORT_DIR"] = _write_export(
      str(root / "soundstream"), tiny_soundstream_params(codec),
      SOUNDSTREAM_GIN.format(c=TINY_CODEC, d=TINY_DISCRIMINATORS))
  for name in ("mulan", "w2v_bert"):
    os.makedirs(root / name)
    macros[f"{name.upper()}_EXPORT_DIR"] = str(root / name)
  for name, file in (("MULAN_RVQ_PATH", "rvq.npz"), ("KMEANS_PATH", "kmeans.npz")):
    (root / file).write_bytes(b"")
    macros[name] = str(root / file)
  (root / "fakes.gin").write_text(FAKES_GIN)
  return ["--gin_file=runs/infer.gin", f"--gin_file={root / 'fakes.gin'}"] + [
      f"--gin.{name}='{value}'" for name, value in macros.items()]


def _run_infer(*args, cwd):
  return run_binary("musiclm_jax.infer", *args, cwd=str(cwd))


def _last_error_line(result) -> str:
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  return result.stderr.strip().splitlines()[-1]


def test_text_to_wav_end_to_end(flags, tmp_path):
  t = np.arange(int(0.3 * 24_000)) / 24_000
  soundfile.write(tmp_path / "hum.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 24_000)
  lines = [
      "calm piano with soft strings",
      {"text": "fast techno <b>&", "seed": 5, "num_samples": 2},
      {"story": [["calm piano", 0.4], ["loud drums", 0.4]], "seed": 4},
      {"text": "more of this", "continue_from": "hum.wav", "seed": 2},
      {"text": "", "seed": 1},
      {"text": "piano", "seconds": -1},
      {"text": "piano", "seconds": 1000},
      {"text": "p" * 1001},
      '{"text": "piano",',
      {"text": "piano", "colour": "red"},
      {"text": "piano", "continue_from": "missing.wav"},
      "calm piano with soft strings",
  ]
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("# a comment, then a blank line\n\n" + "\n".join(
      l if isinstance(l, str) else json.dumps(l) for l in lines))
  out = tmp_path / "out"
  result = _run_infer(*flags, f"--gin.PROMPTS_FILE='{prompts}'", f"--gin.OUTPUT_DIR='{out}'",
                      "--gin.SECONDS=0.8", "--gin.BATCH_SIZE=2", cwd=tmp_path)
  assert _last_error_line(result) == (
      "error: 7 prompt(s) failed, first line 7: empty prompt text: write what the music should "
      f"sound like; the others are in {out / 'results.jsonl'}")
  assert "generated 5 prompt(s)" in result.stdout

  # Records are appended as lines finish: errors first, then lines in batch order.
  records = sorted((json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()),
                   key=lambda r: r["line"])
  assert [r["line"] for r in records] == list(range(3, 15))
  errors = {r["line"]: r["error"] for r in records if "error" in r}
  assert "duration must be > 0" in errors[8]
  assert "1000 s exceeds the limit of 300 s" in errors[9]
  assert "1001 characters, more than the limit of 1000" in errors[10]
  assert "not valid JSON" in errors[11] and "unknown field(s) ['colour']" in errors[12]
  assert "missing.wav does not exist" in errors[13]

  ok = {r["line"]: r for r in records if "error" not in r}
  assert sorted(ok) == [3, 4, 5, 6, 14]
  assert [s["seed"] for s in ok[4]["samples"]] == [5, 6]
  assert ok[5]["story"] == [["calm piano", 0.4], ["loud drums", 0.4]]
  assert ok[3]["sampling"]["fine"]["temperature"] == 0.4 and ok[3]["windows"]["fine_window_seconds"] == 0.08
  assert ok[3]["sources"]["semantic_export_dir"].endswith("semantic")
  audio = {}
  for record in ok.values():
    for sample in record["samples"]:
      info = soundfile.info(out / sample["wav"])
      assert (info.samplerate, info.channels, info.frames) == (24_000, 1, 19_200)
      audio[sample["wav"]], _ = soundfile.read(out / sample["wav"])
      assert np.std(audio[sample["wav"]]) > 1e-3
      assert (out / sample["spectrogram"]).read_bytes()[:4] == b"\x89PNG"
  first, again = ok[3]["samples"][0]["wav"], ok[14]["samples"][0]["wav"]
  np.testing.assert_array_equal(audio[first], audio[again])  # same settings, same music
  assert not np.array_equal(*(audio[s["wav"]] for s in ok[4]["samples"]))

  page = (out / "index.html").read_text()
  for record in ok.values():
    for sample in record["samples"]:
      assert f"src='{sample['wav']}'" in page and f"src='{sample['spectrogram']}'" in page
  assert "fast techno &lt;b&gt;&amp;" in page and "<b>&" not in page
  assert page.count("class='error'") == 7
  assert (out / "config.gin").exists()


def test_missing_checkpoint_and_unknown_gin_name_fail_in_one_line(flags, tmp_path):
  (tmp_path / "prompts.txt").write_text("calm piano\n")
  common = [*flags, f"--gin.PROMPTS_FILE='{tmp_path / 'prompts.txt'}'",
            f"--gin.OUTPUT_DIR='{tmp_path / 'out'}'"]
  result = _run_infer(*common, f"--gin.COARSE_EXPORT_DIR='{tmp_path / 'nowhere'}'", cwd=tmp_path)
  assert _last_error_line(result) == (
      f"error: COARSE_EXPORT_DIR '{tmp_path / 'nowhere'}' is not an existing export folder: "
      "fix the path")
  result = _run_infer(*common, "--gin.cascade.Windows.no_such_knob=1", cwd=tmp_path)
  assert _last_error_line(result).startswith("error: bad gin config")
  assert "no_such_knob" in _last_error_line(result)


def _never_load():
  raise AssertionError("loaded the cascade although no line can run")


def test_unreadable_or_empty_prompt_files_are_one_line_errors(tmp_path):
  (tmp_path / "empty.txt").write_text("\n# only a comment\n")
  (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
  for name, message in (("missing.txt", "cannot read PROMPTS_FILE"),
                        ("empty.txt", "has no prompts"), ("binary.txt", "UTF-8"),
                        (".", "cannot read PROMPTS_FILE")):
    with pytest.raises(UserError, match=message):
      inference.infer(load_cascade=_never_load, prompts_file=str(tmp_path / name),
                      output_dir=str(tmp_path / "out"))


def test_bad_lines_are_reported_and_nothing_loads_when_none_can_run(tmp_path):
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text('{"story": []}\n{"text": "a", "seconds": 0}\n{"text": "a", "seed": "x"}\n'
                     '{"text": "a", "temperature": {"medium": 1}}\n{"text": "a", "top_p": 0}\n')
  result = inference.infer(load_cascade=_never_load, prompts_file=str(prompts),
                           output_dir=str(tmp_path / "out"))
  assert result["num_ok"] == 0 and len(result["errors"]) == 5
  assert 'line 1: "story" must be a non-empty list' in result["errors"][0]
  assert "names unknown stage(s) ['medium']" in result["errors"][3]
  assert "top_p must be in (0, 1]" in result["errors"][4]
  records = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
  assert [json.loads(r)["line"] for r in records] == [1, 2, 3, 4, 5]
  assert (tmp_path / "out" / "index.html").read_text().count("class='error'") == 5


def test_prompt_overrides_reach_each_stage(tmp_path):
  defaults = inference.PromptDefaults(seconds=2.0, seed=3, guidance_scale=3.0)
  parse = lambda line: inference.parse_line(line, 1, defaults, str(tmp_path), 60.0, 100)
  plain = parse("  warm jazz trio ")
  assert plain.fields["text"] == "warm jazz trio" and plain.requests[0].seconds == 2.0
  sampling = dict(plain.requests[0].sampling)
  assert [sampling[s].temperature for s in ("semantic", "coarse", "fine")] == [1.0, 0.95, 0.4]
  assert (sampling["coarse"].guidance_scale, sampling["fine"].guidance_scale) == (3.0, None)
  custom = parse('{"text": "jazz", "temperature": 0.7, "top_k": {"fine": 5}, "num_samples": 3}')
  sampling = dict(custom.requests[0].sampling)
  assert {c.temperature for c in sampling.values()} == {0.7}
  assert (sampling["fine"].top_k, sampling["semantic"].top_k) == (5, 0)
  assert [r.seed for r in custom.requests] == [3, 4, 5]
  with pytest.raises(UserError, match="names unknown stage"):
    parse('{"text": "jazz", "guidance_scale": {"fine": 2.0}}')
  with pytest.raises(UserError, match='a story gives seconds per segment'):
    parse('{"story": [["a", 1]], "seconds": 3}')


def test_two_processes_split_the_lines_and_merge_what_one_process_makes(flags, tmp_path):
  lines = ["calm piano", json.dumps({"text": "fast techno", "seed": 5, "num_samples": 2}),
           json.dumps({"text": "", "seed": 1}), "slow strings"]
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("\n".join(lines))
  common = [*flags, f"--gin.PROMPTS_FILE='{prompts}'", "--gin.SECONDS=0.4", "--gin.BATCH_SIZE=1"]
  one = tmp_path / "one"
  assert _run_infer(*common, f"--gin.OUTPUT_DIR='{one}'", cwd=tmp_path).returncode == 2
  two = tmp_path / "two"
  port = free_port()
  workers = [subprocess.Popen(
      [sys.executable, "-m", "musiclm_jax.infer", *common, f"--gin.OUTPUT_DIR='{two}'",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=multiprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  errors = finish(workers, timeout_seconds=600)
  # Line 3 (empty text) fails on process 0, which also has line 1; process 1 has lines 2 and 4.
  assert [w.returncode for w in workers] == [2, 0], errors[0][-3000:] + errors[1][-3000:]

  def records(folder):
    out = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
      record = json.loads(line)
      for sample in record.get("samples", ()):
        sample["audio"], _ = soundfile.read(folder / sample.pop("wav"))
        assert (folder / sample.pop("spectrogram")).exists()
        del sample["batch_seconds"]
      out[record.pop("line")] = record
    return out

  merged, single = records(two), records(one)
  assert sorted(merged) == sorted(single) == [1, 2, 3, 4]
  for line, record in single.items():
    got = merged[line]
    for a, b in zip(got.pop("samples", ()), record.pop("samples", ())):
      np.testing.assert_allclose(a.pop("audio"), b.pop("audio"), atol=1e-5)
      assert a == b
    assert got == record
  assert sorted(json.loads(l)["line"] for l in
                (two / "process-1-of-2" / "results.jsonl").read_text().splitlines()) == [2, 4]
  page = (two / "index.html").read_text()
  assert "process-1-of-2/audio/line0004_sample0.wav" in page and page.count("class='error'") == 1
