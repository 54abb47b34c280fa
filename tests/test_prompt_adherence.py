"""MuLan prompt adherence: the permutation test's p-values against exact enumeration."""
import itertools

from absl import flags
import numpy as np

import conftest
from musiclm_jax.eval import prompt_adherence


def _exact_p(similarity, prompt_index):
  """Share of all prompt permutations scoring at least the true prompts (mean cosine, recall@1)."""
  rows = np.arange(len(prompt_index))
  nearest = similarity.argmax(axis=1)
  scores = [(similarity[rows, np.asarray(perm)[prompt_index]].mean(),
             np.mean(nearest == np.asarray(perm)[prompt_index]))
            for perm in itertools.permutations(range(similarity.shape[1]))]
  cosine, recall = np.asarray(scores).T
  return (np.mean(cosine >= similarity[rows, prompt_index].mean() - 1e-12),
          np.mean(recall >= np.mean(nearest == prompt_index) - 1e-12))


def test_p_values_match_exact_enumeration_of_permutations():
  rng = np.random.default_rng(0)
  prompt_index = np.array([0, 1, 2, 3, 4, 0])  # one prompt with two clips
  for signal in (0.0, 0.3, 2.0):
    similarity = rng.normal(size=(6, 5))
    similarity[np.arange(6), prompt_index] += signal
    got = prompt_adherence.permutation_p_values(similarity, prompt_index, num_permutations=20000)
    exact_cosine, exact_recall = _exact_p(similarity, prompt_index)
    # 20000 draws: the Monte Carlo p has sd <= 0.0036.
    np.testing.assert_allclose(got["p_value_cosine"], exact_cosine, atol=0.015)
    np.testing.assert_allclose(got["p_value_recall_at_1"], exact_recall, atol=0.015)


def test_clips_that_match_their_prompts_are_significant_and_copies_of_one_clip_are_not():
  embeddings = np.eye(8)
  result = prompt_adherence.adherence(embeddings, embeddings, np.arange(8))
  assert result["recall_at_1"] == 1.0 and result["p_value_cosine"] < 0.001
  same = np.tile(np.eye(8)[:1], (8, 1))  # every clip the same: nothing follows its prompt
  result = prompt_adherence.adherence(same, np.eye(8), np.arange(8))
  assert result["p_value_cosine"] == 1.0 and result["p_value_recall_at_1"] == 1.0


def test_the_binary_is_one_line_on_a_folder_without_results_and_the_library_defines_no_flags(
    tmp_path):
  # The eval modules import this library: its flags are the binary's alone.
  assert "samples_dir" not in flags.FLAGS
  result = conftest.run_binary(
      "musiclm_jax.eval.prompt_adherence", f"--samples_dir={tmp_path}", "--mulan_export_dir=unused",
      "--mulan_rvq_path=unused", f"--output_path={tmp_path}/a.json", cwd=conftest.REPO_DIR)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: no results.jsonl in {tmp_path}: point the samples folder at a musiclm-infer "
      "OUTPUT_DIR")
