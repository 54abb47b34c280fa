"""Logical axis rules: every axis a parameter names must have one."""
from jax.sharding import PartitionSpec as P
import pytest

from musiclm_jax import partitioning
from musiclm_jax.errors import UserError


def test_an_axis_without_a_rule_is_a_one_line_error_naming_it():
  partitioner = partitioning.Partitioner(num_devices=2)
  specs = {"dense": {"kernel": P("embed", "mlp")}, "mystery": {"kernel": P(None, "wobble")}}
  with pytest.raises(UserError, match="logical axis 'wobble' has no partitioning rule") as error:
    partitioner.logical_to_sharding(specs)
  assert "\n" not in str(error.value)


def test_w2v_bert_and_convolution_axes_have_rules():
  partitioner = partitioning.Partitioner(num_devices=2)
  specs = {"codebooks": P("codebook_groups", "codebook", "codevector"),
           "projection": P("codevector", "codevector_out"),
           "conv": P("conv_height", "conv_width", "conv_in", "conv_out"),
           "features": P("conv_features", "embed")}
  shardings = partitioner.logical_to_sharding(specs)
  assert all(s.spec == P(*[None] * len(specs[k])) for k, s in shardings.items())
