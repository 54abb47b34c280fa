"""musiclm_jax: MusicLM in JAX/Flax."""
