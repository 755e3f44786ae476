"""TypeDispatch: most specific class wins, unions register each member, unannotated means `object`."""

from __future__ import annotations

from typing import Any, Union

import pytest
import torch

from lamina.core import TensorBase, TensorImage, TensorImageBW, TensorMask, TypeDispatch
from lamina.core.dispatch import annotated_types


def f_tensor(x: torch.Tensor) -> str:
    return "tensor"


def f_image(x: TensorImage) -> str:
    return "image"


def f_int_or_str(x: int | str) -> str:
    return "int|str"


def f_union(x: Union[float, bytes]) -> str:  # noqa: UP007 (the typing.Union spelling must work too)
    return "float|bytes"


def f_any(x):  # type: ignore[no-untyped-def]
    return "anything"


def test_most_specific_class_wins() -> None:
    td = TypeDispatch([f_tensor, f_image])
    assert td.lookup(torch.Tensor) is f_tensor
    assert td.lookup(TensorImage) is f_image
    assert td.lookup(TensorImageBW) is f_image  # a subclass of TensorImage gets TensorImage's
    assert td.lookup(TensorMask) is f_tensor  # another TensorBase: only the Tensor implementation fits
    assert td.lookup(TensorBase) is f_tensor


def test_registration_order_does_not_matter() -> None:
    assert TypeDispatch([f_image, f_tensor]).lookup(TensorImageBW) is f_image


def test_unions_register_each_member() -> None:
    td = TypeDispatch([f_int_or_str, f_union])
    assert td.lookup(int) is f_int_or_str
    assert td.lookup(str) is f_int_or_str
    assert td.lookup(bool) is f_int_or_str  # bool is an int
    assert td.lookup(float) is f_union
    assert td.lookup(bytes) is f_union
    assert td.lookup(list) is None


def test_unannotated_or_any_means_object() -> None:
    def g(x: Any) -> str:
        return "any"

    assert annotated_types(f_any) == (object,)
    assert annotated_types(g) == (object,)
    td = TypeDispatch([f_any])
    assert td.lookup(list) is f_any and td.lookup(TensorImage) is f_any


def test_other_types_get_none() -> None:
    td = TypeDispatch([f_image])
    assert td.lookup(str) is None and td.lookup(torch.Tensor) is None
    assert not TypeDispatch() and len(td) == 1
    assert "TensorImage" in repr(td)


def test_generic_alias_dispatches_on_origin() -> None:
    def g(x: list[int]) -> str:
        return "list"

    assert annotated_types(g) == (list,)


def test_callable_object_is_read_through_its_call() -> None:
    class Reader:
        def __call__(self, row: dict[str, Any]) -> Any:
            return row["a"]

    assert annotated_types(Reader()) == (dict,)


def test_bad_annotation_is_a_clear_error() -> None:
    def g(x: NotDefinedAnywhere) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    with pytest.raises(TypeError, match=r"(?s)cannot dispatch.*NotDefinedAnywhere.*help:"):
        annotated_types(g)


def test_needs_a_parameter() -> None:
    def g() -> None:
        return None

    with pytest.raises(TypeError, match="needs a parameter"):
        annotated_types(g)
