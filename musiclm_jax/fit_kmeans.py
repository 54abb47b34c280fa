r"""Fits the semantic-token k-means on an exported w2v-BERT, configured by gin.

  python -m musiclm_jax.fit_kmeans --gin_file=runs/fit_kmeans.gin \
    --gin.W2V_BERT_EXPORT_DIR=\"runs/w2v_bert_tiny/export\" \
    --gin.KMEANS_PATH=\"runs/w2v_bert_tiny/kmeans.npz\" --gin.DATA_DIR=\"runs/tfds\" \
    --gin.SEMANTIC_LAYER=2 --gin.NUM_CLUSTERS=1024

Required macros: W2V_BERT_EXPORT_DIR, KMEANS_PATH, SEMANTIC_LAYER (gin/runs/fit_kmeans.gin).
"""
from absl import logging
import gin

from musiclm_jax import gin_utils
from musiclm_jax.tokenizers import kmeans_fit

REQUIRED_MACROS = ("W2V_BERT_EXPORT_DIR", "KMEANS_PATH", "SEMANTIC_LAYER")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  codebook = gin.get_configurable(kmeans_fit.fit_kmeans)()
  logging.info("fitted %d clusters", codebook.num_clusters)
  print(f"k-means of {codebook.num_clusters} clusters saved to "
        f"{gin.query_parameter('%KMEANS_PATH')}: {codebook.metadata}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
