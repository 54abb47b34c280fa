"""What the MuLan and melody tokenizers share: a frozen embedder and the RVQ fitted on its embeddings."""
from musiclm_jax.errors import UserError
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.models.base import Params


class EmbeddingRVQTokenizer:
  """A frozen embedder (`model.config.embedding_dim`-d outputs) and its RVQ; numpy in, int32 tokens out."""

  def __init__(self, model, params: Params, quantizer: rvq_lib.ResidualVQ, rvq_state: rvq_lib.State,
               embedder_name: str):
    if quantizer.dim != model.config.embedding_dim:
      raise UserError(f"the RVQ quantizes {quantizer.dim}-d vectors but {embedder_name} embeds in "
                      f"{model.config.embedding_dim}-d: fit the RVQ on this {embedder_name}")
    self.model = model
    self.params = params
    self.quantizer = quantizer
    self.rvq_state = rvq_state
    self.codebook_size = quantizer.codebook_size
    self.num_levels = quantizer.num_levels
    self.sample_rate_hz = model.config.sample_rate_hz
