"""--input-shape parsing and matching (no framework needed)."""

import pytest

from edgekit.errors import BadInput
from edgekit.tensors import (Signature, TensorSpec, check_shapes_against, parse_input_shape, parse_input_shapes,
                             specs_from_shapes)


def test_plain_named_typed_and_dynamic():
    assert parse_input_shape("1x3x224x224").shape == (1, 3, 224, 224)
    s = parse_input_shape("x=1x16:int64")
    assert (s.name, s.shape, s.dtype) == ("x", (1, 16), "int64")
    assert parse_input_shape("Nx3x8x8").shape == (None, 3, 8, 8)
    assert parse_input_shape("?x3").shape == (None, 3)
    assert parse_input_shape("img=Nx1x8x8:float16").spec("img").layout == "NCHW"


@pytest.mark.parametrize("text, words", [
    ("1x0x3", "'0' is not a dimension"), ("1xax3", "'a' is not a dimension"), ("1x3:complex", "unknown dtype"),
    ("1xNx3", "only the first"), ("", "not a dimension"), ("a b=1x2", "not a valid input name"),
])
def test_bad_syntax(text, words):
    with pytest.raises(BadInput, match=words):
        parse_input_shape(text)


def test_mixed_and_duplicate_names():
    with pytest.raises(BadInput, match="not a mix"):
        parse_input_shapes(["x=1x2", "1x3"])
    with pytest.raises(BadInput, match="twice"):
        parse_input_shapes(["x=1x2", "x=1x3"])


def test_specs_from_shapes_lists_what_is_needed():
    with pytest.raises(BadInput, match=r"forward\(x, mask\)") as e:
        specs_from_shapes([], ["x", "mask"], "m.pt")
    assert "--input-shape x=... --input-shape mask=..." in e.value.hint
    specs = specs_from_shapes(parse_input_shapes(["mask=1x4:bool", "x=1x4"]), ["x", "mask"], "m.pt")
    assert [(s.name, s.dtype) for s in specs] == [("x", "float32"), ("mask", "bool")]
    with pytest.raises(BadInput, match="2 input"):
        specs_from_shapes(parse_input_shapes(["1x4"]), ["x", "mask"], "m.pt")
    with pytest.raises(BadInput, match="no input named y"):
        specs_from_shapes(parse_input_shapes(["y=1x4", "x=1x2"]), ["x", "mask"], "m.pt")


def test_check_against_signature_says_expected_and_given():
    sig = Signature([TensorSpec("image", "float32", (None, 1, 8, 8))], [])
    check_shapes_against(parse_input_shapes(["5x1x8x8"]), sig, "m.pt2")
    check_shapes_against(parse_input_shapes(["image=Nx1x8x8"]), sig, "m.pt2")
    with pytest.raises(BadInput, match=r"expected float32\[\?x1x8x8\], given float32\[1x3x8x8\]"):
        check_shapes_against(parse_input_shapes(["1x3x8x8"]), sig, "m.pt2")
