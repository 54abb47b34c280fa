"""Does generated music follow its prompt? MuLan retrieval of generated clips among the prompts.

For every text prompt of a musiclm-infer output folder, MuLan embeds the
generated clip and all prompts; the clip "follows" its prompt when its own
prompt is the nearest of them (audio→text recall@1). The same is measured
with the prompts shuffled (a derangement: no clip keeps its own), which is
what an unconditional model would score. A permutation test says how
likely the true prompts' score is if the prompts said nothing about the
music: it redraws which prompt each clip was made for (a random permutation
of the prompts) many times, and the p-value is the share of draws that score
at least as well. Story and continuation lines are left out: they have no
single prompt.

  python -m musiclm_jax.eval.prompt_adherence --samples_dir=runs/demo/samples \
      --mulan_export_dir=... --mulan_rvq_path=... --output_path=adherence.json
"""
import json
import os

from absl import flags
import numpy as np

from musiclm_jax import results_file
from musiclm_jax.audio import io as audio_io
from musiclm_jax.errors import UserError


def text_prompt_samples(samples_dir: str) -> list[tuple[str, str]]:
  """(prompt text, wav path) of every sample of every plain text line of results.jsonl."""
  pairs = []
  for record in results_file.read(samples_dir):
    if results_file.is_text_line(record):
      pairs += [(record["text"], os.path.join(samples_dir, s["wav"])) for s in record["samples"]]
  return pairs


def derangement(n: int, seed: int = 0) -> np.ndarray:
  """A permutation of range(n) with no fixed point (n >= 2)."""
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(n)
    if not np.any(order == np.arange(n)):
      return order


def permutation_p_values(similarity: np.ndarray, prompt_index: np.ndarray,
                         num_permutations: int = 10000, seed: int = 0) -> dict[str, float]:
  """One-sided p-values of mean cosine and recall@1 to the true prompts, against permuted prompts.

  similarity [clips, prompts]; prompt_index [clips]. p = (1 + draws scoring
  >= the true prompts) / (1 + num_permutations), so it is never 0.
  """
  rows = np.arange(len(prompt_index))
  nearest = similarity.argmax(axis=1)
  rng = np.random.default_rng(seed)
  permuted = np.stack([rng.permutation(similarity.shape[1]) for _ in range(num_permutations)])
  assigned = permuted[:, prompt_index]  # [draws, clips]
  observed_cosine = similarity[rows, prompt_index].mean()
  observed_recall = np.mean(nearest == prompt_index)
  cosine = similarity[rows, assigned].mean(axis=1)
  recall = (nearest == assigned).mean(axis=1)
  p = lambda draws, observed: float((1 + np.sum(draws >= observed - 1e-12)) / (1 + num_permutations))
  return {"p_value_cosine": p(cosine, observed_cosine), "p_value_recall_at_1": p(recall, observed_recall)}


def adherence(audio_embeddings: np.ndarray, text_embeddings: np.ndarray,
              prompt_index: np.ndarray, seed: int = 0) -> dict:
  """Recall@1 of each clip's prompt among all prompts, for the true and for shuffled prompts,
  with the permutation test's p-values.

  audio_embeddings [clips, D] and text_embeddings [prompts, D], L2-normalised;
  prompt_index [clips]: the prompt each clip was generated for.
  """
  similarity = audio_embeddings @ text_embeddings.T
  nearest = similarity.argmax(axis=1)
  shuffled = derangement(len(text_embeddings), seed)[prompt_index]
  rows = np.arange(len(prompt_index))
  return {"clips": int(len(prompt_index)), "prompts": int(len(text_embeddings)),
          "recall_at_1": float(np.mean(nearest == prompt_index)),
          "recall_at_1_shuffled_prompts": float(np.mean(nearest == shuffled)),
          "chance": 1.0 / len(text_embeddings),
          "cosine_own_prompt": float(np.mean(similarity[rows, prompt_index])),
          "cosine_shuffled_prompt": float(np.mean(similarity[rows, shuffled])),
          **permutation_p_values(similarity, prompt_index, seed=seed)}


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  from musiclm_jax.tokenizers import conditioning  # pylint: disable=import-outside-toplevel
  args = flags.FLAGS
  pairs = text_prompt_samples(args.samples_dir)
  texts = sorted({text for text, _ in pairs})
  if len(texts) < 2:
    raise UserError(f"{args.samples_dir} has fewer than 2 distinct text prompts: nothing to rank")
  tokenizer = conditioning.MuLanTokenizer.load(args.mulan_export_dir, args.mulan_rvq_path)
  # Not load_audio: its checks would refuse a near-silent clip, which is a result here.
  audio = [audio_io.resample(audio_io.to_mono(samples), rate, tokenizer.sample_rate_hz)
           for samples, rate in (audio_io.read_audio(path) for _, path in pairs)]
  audio_embeddings = np.concatenate([tokenizer.audio_embeddings(a[None]) for a in audio])
  result = adherence(audio_embeddings, tokenizer.text_embeddings(texts),
                     np.asarray([texts.index(text) for text, _ in pairs]))
  with open(args.output_path, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result))


if __name__ == "__main__":
  from musiclm_jax import gin_utils  # pylint: disable=g-import-not-at-top
  # Defined here, not at import: the eval modules that import this library define their own.
  flags.DEFINE_string("samples_dir", None, "A musiclm-infer OUTPUT_DIR.", required=True)
  flags.DEFINE_string("mulan_export_dir", None, "MuLan export folder.", required=True)
  flags.DEFINE_string("mulan_rvq_path", None, "MuLan's RVQ file.", required=True)
  flags.DEFINE_string("output_path", None, "Where the JSON result goes.", required=True)
  gin_utils.run(main, usage="use --samples_dir, --mulan_export_dir, --mulan_rvq_path and "
                "--output_path")
