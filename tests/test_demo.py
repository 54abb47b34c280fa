"""`make demo --quick`: the whole chain, corpus to index.html, through the real binaries."""
import json
import os
import subprocess
import sys

import conftest


def _demo(output_dir):
  env = dict(os.environ, PYTHONPATH=conftest.REPO_DIR)
  return subprocess.run([sys.executable, "-m", "musiclm_jax.demo", "--quick",
                         f"--output_dir={output_dir}"], capture_output=True, text=True,
                        env=env, check=False, cwd=conftest.REPO_DIR)


def test_quick_demo_goes_from_nothing_to_music_and_reuses_finished_steps(tmp_path):
  result = _demo(tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  samples = tmp_path / "samples"
  index = (samples / "index.html").read_text()
  records = [json.loads(line) for line in (samples / "results.jsonl").read_text().splitlines()]
  prompts = (tmp_path / "prompts.jsonl").read_text().splitlines()
  assert len(records) == len(prompts) and not any("error" in r for r in records)
  for record in records:
    for sample in record["samples"]:
      assert (samples / sample["wav"]).stat().st_size > 0
      assert sample["wav"] in index
  adherence = json.loads((samples / "prompt_adherence.json").read_text())
  assert 0.0 <= adherence["recall_at_1"] <= 1.0 and adherence["clips"] >= 2
  assert "time per step:" in result.stdout and str(samples / "index.html") in result.stdout
  evaluation = json.loads((tmp_path / "eval" / "eval.json").read_text())
  for metric in ("FAD_musicnn", "FAD_mulan", "KLD_MTT_musicnn", "MCC", "tempo_accuracy"):
    assert set(evaluation["metrics"][metric]["values"]) == {
        "generated", "shuffled", "unconditional", "real", "codec"}, metric
  assert "shuffled prompts" in result.stdout and "MCC" in result.stdout

  rerun = _demo(tmp_path)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  for step in ("soundstream", "w2v_bert", "mulan", "tokenize", "semantic", "generate",
               "generate_unconditional", "eval"):
    assert f"[{step}] done earlier" in rerun.stdout
