"""Parameter counts per stage and scale, by shape inference only."""
import pytest

from musiclm_jax.tools import param_count


@pytest.mark.parametrize("stage", param_count.STAGES)
def test_paper_scale_is_430m_per_stage(stage):
  total = param_count.count_parameters(param_count.build_model(stage, "paper"))
  assert abs(total - 430e6) <= 0.05 * 430e6, f"{stage}: {total / 1e6:.1f}M"


@pytest.mark.parametrize("scale, low, high", [("tiny", 1e6, 6e6), ("small", 30e6, 50e6)])
def test_smaller_scales_parse_and_are_smaller(scale, low, high):
  for stage in param_count.STAGES:
    model = param_count.build_model(stage, scale)
    assert model.stage.name == stage
    assert low < param_count.count_parameters(model) < high


def test_unknown_scale_is_a_one_line_error():
  with pytest.raises(param_count.UserError, match="no gin file .*huge.gin.*scales are"):
    param_count.build_model("semantic", "huge")
