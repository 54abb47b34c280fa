"""Generated SeqIO tasks with learnable structure, for tests and toy runs.

Importing a module here registers its tasks (`toy_tasks`: "toy_lm";
`stage_tasks`: "synthetic_<stage>"); nothing else in `musiclm_jax` imports
them, so the tasks on real data never share the registry with fixtures.
"""
