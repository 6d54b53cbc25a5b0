"""edgekit.request: the one request the CLI and `edgekit build` hand to every stage."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from tiny_onnx import matmul_onnx


@pytest.fixture
def onnx_project(tmp_path):
    matmul_onnx(tmp_path / "m.onnx")
    (tmp_path / "edgekit.toml").write_text(textwrap.dedent("""
        [[models]]
        name = "m"
        source = "m.onnx"
        input_shape = "x=1x4"
        signature = "serving_default"
        label_column = "y"
        batch_axis = { x = 0 }

          [[models.targets]]
          target = "onnx"
          atol = 0.5
        """))
    return tmp_path


def test_build_and_cli_build_the_same_request(onnx_project):
    """An edgekit.toml model and the same options given on the command line reach the stages as
    one and the same request (#14: build once dropped input_shape/model_class/model_args)."""
    from edgekit.build import plan
    from edgekit.config import load as load_config
    from edgekit.formats import detect
    from edgekit.loading import Trust
    from edgekit.request import SourceRequest

    (job,) = plan(load_config(onnx_project / "edgekit.toml"))
    from_build = job.request()
    from_cli = SourceRequest.from_cli(onnx_project / "m.onnx", detect(onnx_project / "m.onnx"), input_shapes=("x=1x4",),
                                      trust=Trust(), signature="serving_default", label_column="y",
                                      batch_axis={"x": 0}, tolerance={"atol": 0.5, "rtol": None})
    assert from_build == from_cli
    assert [s.name for s in from_build.source_options["input_shapes"]] == ["x"]
    assert from_build.open_options()["signature"] == "serving_default"


def test_request_is_frozen_and_crosses_the_process_boundary(onnx_project):
    from dataclasses import FrozenInstanceError

    from edgekit.build import plan
    from edgekit.config import load as load_config

    req = plan(load_config(onnx_project / "edgekit.toml"))[0].request()
    assert pickle.loads(pickle.dumps(req)) == req
    with pytest.raises(FrozenInstanceError):
        req.source = "other.onnx"
