"""results.jsonl is read back in prompt-line order, whoever finished first; a missing one is a
one-line error; its finished plain text lines give their samples' saved tokens."""
import json

import pytest

from musiclm_jax import results_file
from musiclm_jax.errors import UserError


def test_records_come_back_in_line_order_without_blank_lines(tmp_path):
  # musiclm-infer appends a line's record when its last sample is written: line 3 before line 1.
  written = [{"line": 3, "text": "c"}, {"line": 1, "text": "a"}, {"line": 2, "error": "bad wav"}]
  (tmp_path / results_file.NAME).write_text(
      "".join(json.dumps(r) + "\n" for r in written) + "\n", encoding="utf-8")
  assert results_file.read(str(tmp_path)) == sorted(written, key=lambda r: r["line"])


def test_a_folder_without_results_names_the_folder_and_its_role(tmp_path):
  with pytest.raises(UserError) as error:
    results_file.read(str(tmp_path), "unconditional")
  message = str(error.value)
  assert "\n" not in message and str(tmp_path) in message
  assert message.startswith(f"no {results_file.NAME} in") and "unconditional folder" in message


def test_text_line_tokens_are_the_finished_plain_text_lines_samples(tmp_path):
  arrays = {name: [[line]] for name, line in (("a", 1), ("b", 2), ("c", 3), ("d", 4))}
  for name, codes in arrays.items():
    results_file.write_tokens(str(tmp_path / f"{name}.npz"), codes, [codes[0][0]], codes)
  sample = lambda name: {"wav": f"{name}.wav", "tokens": f"{name}.npz"}
  written = [{"line": 4, "text": "t", "samples": [sample("d"), {"wav": "no_tokens.wav"}]},
             {"line": 1, "text": "t", "samples": [sample("a")]},
             {"line": 2, "story": [["s", 2.0]], "samples": [sample("b")]},
             {"line": 3, "text": "t", "continue_from": "x.wav", "samples": [sample("c")]},
             {"line": 5, "text": "t", "error": "bad wav"},
             {"line": 6, "text": "t", "melody_from": "hum.wav", "samples": [sample("a")]}]
  (tmp_path / results_file.NAME).write_text("".join(json.dumps(r) + "\n" for r in written))
  samples = results_file.text_line_tokens(str(tmp_path))
  assert [(text, name, int(tokens["semantic"][0])) for text, name, tokens in samples] == [
      ("t", "a.npz", 1), ("t", "d.npz", 4)]
  assert [results_file.is_text_line(r) for r in written] == [True, True, False, False, False, False]
