"""results.jsonl is read back in prompt-line order, whoever finished first; a missing one is a one-line error."""
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
