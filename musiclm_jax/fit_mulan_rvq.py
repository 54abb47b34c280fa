r"""Fits MuLan's 12 x 1024 conditioning RVQ on audio embeddings, then measures retrieval.

  python -m musiclm_jax.fit_mulan_rvq --gin_file=runs/fit_mulan_rvq.gin \
      --gin.EXPORT_DIR=\"runs/mulan_tiny_export\" --gin.DATA_DIR=\"runs/tfds\" \
      --gin.OUTPUT_DIR=\"runs/mulan_tiny\"

Writes OUTPUT_DIR/rvq.npz (load with `MuLanTokenizer.load(EXPORT_DIR, path)`)
and OUTPUT_DIR/retrieval_<split>.json for every split in EVAL_SPLITS.
"""
import json

import gin

from musiclm_jax import gin_utils
from musiclm_jax.eval import retrieval
from musiclm_jax.tokenizers import rvq_fit

REQUIRED_MACROS = ("EXPORT_DIR", "DATASET", "DATA_DIR", "OUTPUT_DIR")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  tokenizer = gin.get_configurable(rvq_fit.fit_rvq_on_dataset)()
  results = gin.get_configurable(retrieval.evaluate_splits)(tokenizer)
  for split, result in results.items():
    print(f"{split}: {json.dumps(result['retrieval'])}")
    print(f"{split}: token agreement (mean over levels) {json.dumps(result['token_agreement_mean'])}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
