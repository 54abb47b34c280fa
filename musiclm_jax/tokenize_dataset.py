r"""musiclm-tokenize: runs the frozen tokenizers over a TFDS audio dataset into a token cache.

  musiclm-tokenize --gin_file=runs/tokenize.gin --gin.DATASET=\"synth_music/tiny\" \
    --gin.DATA_DIR=\"runs/tfds\" --gin.TOKEN_CACHE_DIR=\"runs/tokens\" ...tokenizer exports...

Required macros: DATASET, TOKEN_CACHE_DIR (gin/runs/tokenize.gin declares
them and the tokenizer exports). Rerunning the same command resumes; on many
hosts, each writes its own shards. The resolved config is written to
TOKEN_CACHE_DIR/config.gin.
"""
import gin
import tensorflow as tf

from musiclm_jax import gin_utils
from musiclm_jax.tokenizers import cache_writer

REQUIRED_MACROS = ("DATASET", "TOKEN_CACHE_DIR")

def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.initialize_distributed_from_flags()
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  cache_dir = gin.query_parameter("%TOKEN_CACHE_DIR")
  metadata = gin.get_configurable(cache_writer.tokenize_dataset)()
  tf.io.gfile.makedirs(cache_dir)
  gin_utils.write_config(cache_dir)
  for split, counts in metadata.splits.items():
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts["skipped"].items()))
    print(f"{split}: {counts['num_records']} records in {counts['finished_shards']}/"
          f"{counts['num_shards']} shards; skipped {skipped or 'none'}")
  print(f"token cache in {cache_dir}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
