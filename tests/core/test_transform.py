"""Transform and Pipeline: typed encodes/decodes, tuples, re-typing, split_idx, order, lazy setup."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lamina.core import (
    ItemTransform,
    Pipeline,
    TensorCategory,
    TensorImage,
    TensorImageBW,
    TensorMask,
    Transform,
    as_transform,
    decodes,
    encodes,
)
from lamina.data import Categorize, Datasets


class Double(Transform):
    def encodes(self, x: int) -> int:
        return 2 * x

    def encodes(self, x: str) -> str:  # type: ignore[no-redef]  # noqa: F811
        return x + x

    def decodes(self, x: int) -> int:
        return x // 2

    def decodes(self, x: str) -> str:  # type: ignore[no-redef]  # noqa: F811
        return x[: len(x) // 2]


class Brighten(Transform):
    def encodes(self, x: TensorImage) -> torch.Tensor:
        return x.as_subclass(torch.Tensor) + 1  # a plain tensor: the Transform gives it x's type back

    def encodes(self, x: TensorMask) -> TensorCategory:  # type: ignore[no-redef]  # noqa: F811
        return torch.tensor(0).as_subclass(TensorCategory)  # a different semantic type is kept


def test_several_encodes_and_decodes_in_one_class() -> None:
    t = Double()
    assert t(3) == 6 and t("ab") == "abab"
    assert t.decode(6) == 3 and t.decode("abab") == "ab"
    assert t.has_decodes


def test_other_types_pass_through() -> None:
    t = Double()
    assert t(1.5) == 1.5
    x = torch.ones(2)
    assert t(x) is x
    assert t.decode(1.5) == 1.5


def test_tuples_one_level_deep_lists_are_single_values() -> None:
    t = Double()
    assert t((3, "a", 1.5)) == (6, "aa", 1.5)
    assert t((1, (2, 3))) == (2, (2, 3))  # a nested tuple is one value, of a type Double doesn't handle

    class ListLen(Transform):
        def encodes(self, x: list) -> int:  # type: ignore[type-arg]
            return len(x)

    assert ListLen()([1, 2, 3]) == 3  # the list as one value
    assert ListLen()(([1, 2], [3])) == (2, 1)


def test_item_transform_sees_the_whole_tuple() -> None:
    seen: list[Any] = []

    class Swap(ItemTransform):
        def encodes(self, x: tuple) -> tuple:  # type: ignore[type-arg]
            seen.append(x)
            return (x[1], x[0])

    assert Swap()((1, "a")) == ("a", 1)
    assert seen == [(1, "a")]


def test_inherited_encodes_and_override_for_the_same_type() -> None:
    class Base(Transform):
        def encodes(self, x: int) -> str:
            return "base int"

        def encodes(self, x: str) -> str:  # type: ignore[no-redef]  # noqa: F811
            return "base str"

    class Child(Base):
        def encodes(self, x: int) -> str:
            return "child int"

    class Grandchild(Child):
        def encodes(self, x: bool) -> str:
            return "grandchild bool"

    assert Child()(1) == "child int" and Child()("s") == "base str"
    assert Base()(1) == "base int"  # the parent is unchanged
    g = Grandchild()
    assert (g(True), g(2), g("s")) == ("grandchild bool", "child int", "base str")


def test_plain_tensor_results_get_the_input_type_back() -> None:
    img = torch.zeros(1, 2, 2, dtype=torch.uint8).as_subclass(TensorImage)
    out = Brighten()(img)
    assert type(out) is TensorImage and int(out.sum()) == 4
    bw = torch.zeros(1, 2, 2).as_subclass(TensorImageBW)
    assert type(Brighten()(bw)) is TensorImageBW  # the subclass, not the annotated class
    assert type(Brighten()(torch.zeros(2, 2).as_subclass(TensorMask))) is TensorCategory
    plain = torch.zeros(2)
    assert type(Brighten()(plain)) is torch.Tensor  # not handled: passes through


def test_unannotated_encodes_applies_to_everything() -> None:
    class Tag(Transform):
        def encodes(self, x):  # type: ignore[no-untyped-def]
            return ("tag", x)

    assert Tag()((1, "a")) == (("tag", 1), ("tag", "a"))


def test_functions_become_transforms() -> None:
    def inc(x: int) -> int:
        return x + 1

    t = as_transform(inc)
    assert t((1, "a")) == (2, "a") and t.name == "inc"
    assert as_transform(Double).__class__ is Double
    t2 = Transform(enc=lambda x: x * 10, dec=lambda x: x // 10)
    assert t2(2) == 20 and t2.decode(20) == 2


def test_split_idx() -> None:
    train_only = Transform(enc=lambda x: x + 1, split_idx=0)
    valid_only = Transform(enc=lambda x: x + 100, split_idx=1)
    both = Transform(enc=lambda x: x * 2)
    assert (train_only(1, split_idx=0), train_only(1, split_idx=1), train_only(1)) == (2, 1, 2)
    assert (valid_only(1, split_idx=0), valid_only(1, split_idx=1)) == (1, 101)
    assert (both(1, split_idx=0), both(1, split_idx=1), both(1)) == (2, 2, 2)
    tfms = [train_only, valid_only, both]
    assert Pipeline(tfms, split_idx=0)(1) == 4  # (1 + 1) * 2
    assert Pipeline(tfms, split_idx=1)(1) == 202  # (1 + 100) * 2
    assert Pipeline(tfms).with_split(0)(1) == 4
    assert train_only.decode(5, split_idx=1) == 5


def test_pipeline_sorts_by_order_stably_and_decodes_in_reverse() -> None:
    log: list[str] = []

    def make(name: str, order: int) -> Transform:
        def enc(x: Any) -> Any:
            log.append(f"enc {name}")
            return x

        def dec(x: Any) -> Any:
            log.append(f"dec {name}")
            return x

        return Transform(enc=enc, dec=dec, order=order)

    p = Pipeline([make("c", 5), make("a", 0), make("b", 0)])
    p(0)
    assert log == ["enc a", "enc b", "enc c"]
    log.clear()
    p.decode(0)
    assert log == ["dec c", "dec b", "dec a"]
    p.add([make("first", -1)])
    assert [t.order for t in p] == [-1, 0, 0, 5] and len(p) == 4
    assert "Pipeline:" in repr(p)


def test_pipeline_decode_undoes_encode() -> None:
    p = Pipeline([Double(), Transform(enc=lambda x: x + 1, dec=lambda x: x - 1, order=1)])
    assert p(5) == 11 and p.decode(11) == 5


class CountingDecoder(Transform):
    """Stands for an image decoder: expensive, so setup must not call it for nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encodes(self, x: str) -> int:
        self.calls += 1
        return len(x)


class LearnsLength(Transform):
    """Setup that only looks at how many items there are."""

    def setup(self, items: Sequence[Any]) -> None:
        self.n = len(items)


class LearnsFirst(Transform):
    def setup(self, items: Sequence[Any]) -> None:
        self.first = items[0]


def test_setup_is_lazy_and_sees_items_through_previous_transforms() -> None:
    dec = CountingDecoder()
    learn_len, learn_first = LearnsLength(), LearnsFirst()
    p = Pipeline([dec, learn_len])
    p.setup(["a", "bb", "ccc"])
    assert learn_len.n == 3 and dec.calls == 0  # nothing read, nothing decoded
    p = Pipeline([dec, learn_first])
    p.setup(["a", "bb", "ccc"])
    assert learn_first.first == 1 and dec.calls == 1  # only the item it read


def test_datasets_setup_does_not_decode_the_inputs() -> None:
    dec = CountingDecoder()
    items = ["cat.png", "dog.png", "cat2.png", "dog2.png"]
    dsets = Datasets(items, [[dec], [lambda s: s[:3], Categorize()]], splits=([0, 1, 2], [3]))
    assert dec.calls == 0
    assert dsets.pipelines[1].tfms[-1].vocab == ["cat", "dog"]  # type: ignore[attr-defined]


def test_transform_repr_and_name() -> None:
    assert repr(Double()) == "Double"


@given(st.lists(st.integers(-(10**6), 10**6) | st.text(max_size=5), max_size=6))
def test_double_round_trip(values: list[Any]) -> None:
    t = Double()
    x = tuple(values)
    assert t.decode(t(x)) == x


@given(st.integers(0, 255), st.integers(1, 4), st.integers(1, 4))
def test_retyping_round_trip(v: int, h: int, w: int) -> None:
    class Shift(Transform):
        def encodes(self, x: TensorImage) -> torch.Tensor:
            return x.as_subclass(torch.Tensor).float() + 0.5

        def decodes(self, x: TensorImage) -> torch.Tensor:
            return (x.as_subclass(torch.Tensor) - 0.5).to(torch.uint8)

    img = torch.full((1, h, w), v, dtype=torch.uint8).as_subclass(TensorImage)
    t = Shift()
    enc = t(img)
    assert type(enc) is TensorImage and enc.dtype == torch.float32
    back = t.decode(enc)
    assert type(back) is TensorImage and torch.equal(
        back.as_subclass(torch.Tensor), img.as_subclass(torch.Tensor)
    )


class Marked(Transform):
    """The lint-clean spelling: methods with their own names, marked @encodes / @decodes."""

    @encodes
    def number(self, x: int) -> int:
        return 2 * x

    @encodes
    def word(self, x: str) -> str:
        return x + x

    @decodes
    def halve(self, x: int) -> int:
        return x // 2


class MarkedChild(Marked):
    @encodes
    def flag(self, x: bool) -> bool:  # bool is an int: the most specific annotation wins
        return not x


def test_marked_methods_dispatch_decode_and_inherit() -> None:
    assert Marked()((3, "a", 1.5)) == (6, "aa", 1.5)
    assert Marked().decode(6) == 3
    assert MarkedChild()((3, True)) == (6, False)
    assert Marked().number(4) == 8  # still an ordinary method


def test_a_class_built_with_type_applies_its_encodes() -> None:
    def enc(self: Transform, x: int) -> int:
        return x + 1

    def dec(self: Transform, x: int) -> int:
        return x - 1

    cls = type("AddOne", (Transform,), {"encodes": enc, "decodes": dec})
    t = cls()
    assert t(1) == 2 and t.decode(2) == 1 and t("a") == "a"


def test_an_encodes_without_self_or_with_extra_arguments_is_refused() -> None:
    with pytest.raises(TypeError, match=r"(?s)must take \(self, x\).*help:"):

        class NoSelf(Transform):
            @staticmethod
            def encodes(x: int) -> int:
                return x

    with pytest.raises(TypeError, match="must take"):

        class TooMany(Transform):
            @encodes
            def both(self, x: int, y: int) -> int:
                return x + y


@pytest.mark.slow
def test_the_readme_idiom_passes_ruff_and_mypy_as_a_user_writes_it(tmp_path: Path) -> None:
    """A user's own file with the README's transform passes both tools with their default rules."""
    import re
    import shutil
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"## Lowest layer.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    (tmp_path / "user_code.py").write_text(code.group(1))
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    checks = [[ruff or "ruff", "check", "--isolated", "user_code.py"]]
    checks.append([sys.executable, "-m", "mypy", "--no-incremental", "user_code.py"])
    for cmd in checks:
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd[0]}: {r.stdout}{r.stderr}"
