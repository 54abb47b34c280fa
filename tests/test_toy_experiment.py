"""The toy experiment's gin config trains the stage LM well below uniform loss."""
import math

import gin

from musiclm_jax import gin_utils
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import trainer
from musiclm_jax.data.synthetic import toy_tasks


def test_toy_lm_learns_the_markov_chain(tmp_path):
  gin.clear_config()
  gin_utils.parse_gin(["experiments/toy_lm.gin"], [
      f"MODEL_DIR = '{tmp_path}'", "TRAIN_STEPS = 120", "TASK_FEATURE_LENGTHS = {'targets': 64}",
      "trainer.train.eval_period = 120", "trainer.train.checkpoint_period = 120"])
  try:
    gin.get_configurable(trainer.train)()
  finally:
    gin.clear_config()
  evals = [r for r in metrics_lib.read_jsonl(tmp_path / "metrics.jsonl") if "eval/loss" in r]
  uniform = math.log(toy_tasks.TOY_VOCAB_SIZE - toy_tasks.FIRST_ID)
  assert evals[-1]["step"] == 120
  assert evals[-1]["eval/loss"] < 0.5 * uniform
