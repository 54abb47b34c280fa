"""`make demo --quick`: the whole chain, corpus to index.html, through the real binaries; the
story line's choice of captions."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import conftest
from musiclm_jax import demo
from musiclm_jax.errors import UserError
from musiclm_jax.tokenizers import conditioning


def _demo(output_dir):
  return subprocess.run([sys.executable, "-m", "musiclm_jax.demo", "--quick",
                         f"--output_dir={output_dir}"], capture_output=True, text=True,
                        env=conftest.binary_env(), check=False, cwd=conftest.REPO_DIR)


class _NoBinaries:
  """A runner for a re-run that must start nothing."""

  def run(self, module, args, log_path):
    raise AssertionError(f"a finished step ran {module} again (log {log_path}): {args}")


def test_quick_demo_goes_from_nothing_to_music_and_reuses_finished_steps(tmp_path, capsys):
  result = _demo(tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  samples = tmp_path / "samples"
  index = (samples / "index.html").read_text()
  records = [json.loads(line) for line in (samples / "results.jsonl").read_text().splitlines()]
  prompts = (tmp_path / "prompts.jsonl").read_text().splitlines()
  assert len(records) == len(prompts) and not any("error" in r for r in records)
  # Design section 10's levers: guided prompt lines, an unguided unconditional baseline's,
  # and a MuLan RVQ of at most 8 fitted codes per level.
  assert all(json.loads(line)["guidance_scale"] == demo.PROMPT_GUIDANCE for line in prompts)
  assert not any("guidance_scale" in json.loads(line)
                 for line in (tmp_path / "captions.jsonl").read_text().splitlines())
  _, rvq_state = conditioning.load_rvq(str(tmp_path / "mulan" / "rvq.npz"))
  used = (np.asarray(rvq_state["cluster_size"]) > 0).sum(axis=1)
  assert 1 < used.max() <= demo.MULAN_CODES_PER_LEVEL, used
  for record in records:
    for sample in record["samples"]:
      assert (samples / sample["wav"]).stat().st_size > 0
      assert sample["wav"] in index
  # The adherence report covers every plain text line's clips, ranks them among
  # the distinct captions, and gives the shuffled-prompt figure and chance.
  adherence = json.loads((samples / "prompt_adherence.json").read_text())
  text_records = [r for r in records if "text" in r and not r.get("continue_from")
                  and not r.get("melody_from")]
  captions = {r["text"] for r in text_records}
  clips = sum(len(r["samples"]) for r in text_records)
  assert adherence["prompts"] == len(captions) >= 2 and adherence["clips"] == clips
  assert adherence["chance"] == pytest.approx(1 / len(captions))
  for figure in ("recall_at_1", "recall_at_1_shuffled_prompts"):
    hits = adherence[figure] * clips  # A fraction of the clips.
    assert hits == pytest.approx(round(hits)) and 0 <= round(hits) <= clips, (figure, adherence)
  assert 0 < adherence["p_value_cosine"] <= 1 and 0 < adherence["p_value_recall_at_1"] <= 1
  assert "shuffled" in result.stdout and "chance" in result.stdout
  assert "permutation p =" in result.stdout
  assert "time per step:" in result.stdout and str(samples / "index.html") in result.stdout
  evaluation = json.loads((tmp_path / "eval" / "eval.json").read_text())
  for metric in ("FAD_musicnn", "FAD_mulan", "KLD_MTT_musicnn", "MCC", "tempo_accuracy",
                 "judge_genre_accuracy"):
    assert set(evaluation["metrics"][metric]["values"]) == {
        "generated", "shuffled", "unconditional", "real", "codec", "noise"}, metric
  assert "shuffled prompts" in result.stdout and "MCC" in result.stdout
  assert 0 < evaluation["p_values"]["judge_genre_accuracy"]["p_value"] <= 1
  # Window joins: the 2 s clips already span several coarse and fine windows (1 s and 0.5 s),
  # and so do the real 2 s clips at the same join times.
  assert {"coarse", "fine"} <= set(evaluation.get("joins", {})), evaluation["unavailable"].get("joins")
  for stage, figures in evaluation["joins"].items():
    assert figures["generated"]["ratio"] > 0 and 0 < figures["generated"]["p_value"] <= 1, stage
    assert stage == "semantic" or figures["real"]["joins"] > 0, (stage, figures)
  assert "window joins" in result.stdout
  # The story's two segments are of two genres, but at 2 s each no 3 s judge window fits in one.
  assert "no 2.99 s window inside one segment" in evaluation["unavailable"]["story"]
  # Token probes: every stream of the real held-out clips, and the generated clips' tokens.
  probes = {(row["source"], row["representation"]) for row in evaluation["token_probes"]}
  assert {("real", "semantic"), ("real", "fine"), ("generated", "semantic"),
          ("generated", "coarse")} <= probes, evaluation["unavailable"]
  assert all("tokens" in sample for record in records for sample in record["samples"])
  assert "token probes" in result.stdout
  # Melody lines: two held-out tunes, each with its caption and again with the other's
  # melody; the page plays each line's input beside its music, and the demo reports both.
  melody_records = sorted((r for r in records if r.get("melody_from")), key=lambda r: r["line"])
  melodies = sorted({r["melody_from"] for r in melody_records})
  assert len(melody_records) == 4 and len(melodies) == 2
  for record in melody_records:
    assert os.path.dirname(record["melody_from"]) == str(tmp_path / "melodies")
    melody_input = soundfile.info(record["melody_from"])
    assert melody_input.samplerate == 24_000 and melody_input.duration == pytest.approx(2.0)
    assert (samples / record["melody"]["wav"]).stat().st_size > 0
    assert record["melody"]["wav"] in index and record["melody"]["spectrogram"] in index
    assert f"melody: {os.path.basename(record['melody_from'])}" in index
  for first, second in zip(melody_records[::2], melody_records[1::2]):
    assert first["text"] == second["text"] and first["melody_from"] != second["melody_from"]
  melody = json.loads((samples / "melody_adherence.json").read_text())
  # The tunes' own real music, cut from the held-out clips beside their hums and whistles.
  assert melody["num_pairs"] == melody["real_music"]["num_pairs"] == 2
  for figures in (melody, melody["real_music"]):
    for figure in ("matched_per_pair", "mismatched_per_pair"):
      assert all(0 <= value <= 1 for value in figures[figure])
  for i in range(2):
    music = soundfile.info(tmp_path / "melodies" / f"piece{i}_music.wav")
    assert music.duration == pytest.approx(2.0)
  assert "melody adherence" in result.stdout and "given another melody" in result.stdout
  assert "the tunes' real music" in result.stdout
  assert 0 < melody["p_value"] <= 1
  # The stages read the tunes' pitch classes; the paper's melody embedder is trained and
  # its retrieval of the held-out pieces printed beside MuLan's.
  for stage in ("semantic", "coarse"):
    assert "MELODY = 'pitch'" in (tmp_path / stage / "export" / "config.gin").read_text(), stage
  retrieval = json.loads((tmp_path / "melody" / demo.MELODY_RETRIEVAL).read_text())
  assert set(retrieval) == {"melody_embedder", "mulan_audio"}
  assert retrieval["melody_embedder"]["num_candidates"] >= 2
  assert "melody retrieval, recall@1" in result.stdout

  # The re-run, in this process: a subprocess re-run spent its time importing JAX and TF
  # for a run that starts nothing. Any binary a finished step started again fails it here.
  capsys.readouterr()
  rerun = demo.Pipeline(str(tmp_path), demo.QUICK, _NoBinaries())
  rerun.run()
  stdout = capsys.readouterr().out
  finished = sorted(name[:-len(".done")] for name in os.listdir(tmp_path / "logs")
                    if name.endswith(".done"))  # the first run's step markers
  assert len(finished) == 16 and "eval" in finished, finished
  assert sorted(name for name, _, reused in rerun.timings if reused) == finished, rerun.timings
  for step in finished:
    assert f"[{step}] done earlier" in stdout


def test_story_is_the_first_caption_and_the_first_later_one_of_another_genre():
  examples = [{"caption": b"first", "genre": b"rock"}, {"caption": b"same genre", "genre": b"rock"},
              {"caption": b"other genre", "genre": b"jazz"}, {"caption": b"later", "genre": b"pop"}]
  assert demo.story_captions(iter(examples), "synth_music/quick") == ("first", "other genre")
  with pytest.raises(UserError) as e:
    demo.story_captions(iter(examples[:2]), "synth_music/quick")
  assert "no two clips of different genres" in str(e.value) and "\n" not in str(e.value)
