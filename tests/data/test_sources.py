"""Sources: listing files, labelling items and splitting them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lamina.data import (
    ColReader,
    ColSplitter,
    EndSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    MaskSplitter,
    RandomSplitter,
    RegexLabeller,
    TrainTestSplitter,
    get_files,
    get_image_files,
    parent_label,
    using_attr,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in [
        "a/1.png",
        "a/2.JPG",
        "a/notes.txt",
        "b/sub/3.png",
        "b/4.jpeg",
        "top.png",
        ".hidden.png",
        ".cache/5.png",
        "a/.6.png",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def names(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_get_files_extensions_recurse_and_hidden(tree: Path) -> None:
    all_files = names(get_files(tree), tree)
    assert all_files == ["a/1.png", "a/2.JPG", "a/notes.txt", "b/4.jpeg", "b/sub/3.png", "top.png"]
    # extensions with or without the dot, case-insensitive
    assert names(get_files(tree, [".png", "jpg"]), tree) == ["a/1.png", "a/2.JPG", "b/sub/3.png", "top.png"]
    assert names(get_files(tree, ["png"], recurse=False), tree) == ["top.png"]


def test_get_files_folders(tree: Path) -> None:
    assert names(get_files(tree, folders=["b"]), tree) == ["b/4.jpeg", "b/sub/3.png"]
    assert names(get_files(tree, folders=["a", "b"], recurse=False, extensions=["png"]), tree) == ["a/1.png"]


def test_get_files_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*help:"):
        get_files(tmp_path / "nope")


def test_get_image_files(tree: Path) -> None:
    assert "a/notes.txt" not in names(get_image_files(tree), tree)
    assert len(get_image_files(tree)) == 5


def test_get_image_files_empty_folder_names_folder_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError) as e:
        get_image_files(tmp_path / "empty")
    msg = str(e.value)
    assert str(tmp_path / "empty") in msg and ".png" in msg and ".jpg" in msg and "help:" in msg


def test_parent_label() -> None:
    assert parent_label("train/cat/01.jpg") == "cat"
    assert parent_label(Path("dog/x.png")) == "dog"


def test_regex_labeller() -> None:
    by_name = RegexLabeller(r"^(.+)_\d+\.jpg$", match=True)
    assert by_name(Path("/data/great_pyrenees_12.jpg")) == "great_pyrenees"
    assert by_name("/data/Abyssinian_3.jpg") == "Abyssinian"  # a str path: matched on its name too
    assert RegexLabeller(r"/(\w+)/\d+\.png$")("root/cat/01.png") == "cat"
    with pytest.raises(ValueError, match=r"(?s)matched nothing in 'x.png'.*help:"):
        by_name("x.png")


def test_col_reader() -> None:
    row = pd.Series({"fn": "a.png", "label": "x y", "n": 3, "empty": float("nan")})
    assert ColReader("fn")(row) == "a.png"
    assert ColReader(0)(row) == "a.png"
    assert ColReader(["fn", "n"])(row) == ["a.png", 3]
    assert ColReader("fn", pref="imgs/", suff=".bak")(row) == "imgs/a.png.bak"
    assert ColReader("fn", pref=Path("imgs"))(row) == str(Path("imgs") / "a.png")
    assert ColReader("label", label_delim=" ")(row) == ["x", "y"]
    assert ColReader("empty", label_delim=" ")(row) == []


def test_col_reader_missing_column_lists_columns() -> None:
    row = pd.Series({"fn": "a.png", "label": "x"})
    with pytest.raises(KeyError) as e:
        ColReader("lable")(row)
    msg = str(e.value)
    assert "'lable'" in msg and "['fn', 'label']" in msg and "\nhelp:" in msg


def test_using_attr() -> None:
    f = using_attr(RegexLabeller(r"^([a-z]+)\d"), "name")
    assert f(Path("/x/cat12.png")) == "cat"
    assert "name" in f.__name__


ITEMS = list(range(10))


def check_partition(splits: tuple[list[int], list[int]], n: int) -> None:
    train, valid = splits
    assert sorted(train + valid) == list(range(n)) and not set(train) & set(valid)


def test_random_splitter() -> None:
    s = RandomSplitter(0.3, seed=1)(ITEMS)
    check_partition(s, 10)
    assert len(s[1]) == 3
    assert s == RandomSplitter(0.3, seed=1)(ITEMS)
    assert RandomSplitter(0.0)(ITEMS) == (ITEMS, [])
    with pytest.raises(ValueError, match=r"(?s)valid_pct must be in \[0, 1\), got 1.5.*help:"):
        RandomSplitter(1.5)


def test_index_splitter() -> None:
    assert IndexSplitter([1, 3])(ITEMS) == ([0, 2, 4, 5, 6, 7, 8, 9], [1, 3])
    with pytest.raises(IndexError, match=r"(?s)\[12\] out of range for 10 items.*help:"):
        IndexSplitter([12])(ITEMS)


def test_end_splitter() -> None:
    assert EndSplitter(0.2)(ITEMS) == (list(range(8)), [8, 9])
    assert EndSplitter(0.2, valid_last=False)(ITEMS) == (list(range(2, 10)), [0, 1])
    with pytest.raises(ValueError):
        EndSplitter(-0.1)


def test_func_and_mask_splitters() -> None:
    assert FuncSplitter(lambda o: o % 5 == 0)(ITEMS) == ([1, 2, 3, 4, 6, 7, 8, 9], [0, 5])
    mask = [i >= 7 for i in ITEMS]
    assert MaskSplitter(mask)(ITEMS) == (list(range(7)), [7, 8, 9])
    with pytest.raises(ValueError, match=r"(?s)3 values for 10 items.*help:"):
        MaskSplitter([True, False, True])(ITEMS)


def test_grandparent_splitter() -> None:
    items = [
        Path("train/cat/1.png"),
        Path("valid/cat/2.png"),
        Path("train/dog/3.png"),
        Path("test/dog/4.png"),
    ]
    assert GrandparentSplitter()(items) == ([0, 2], [1])
    assert GrandparentSplitter("train", "test")(items) == ([0, 2], [3])
    with pytest.raises(ValueError) as e:
        GrandparentSplitter("training", "validation")(items)
    assert "['test', 'train', 'valid']" in str(e.value) and "help:" in str(e.value)


def test_col_splitter(table: pd.DataFrame) -> None:
    train, valid = ColSplitter()(table)
    assert valid == [15, 16, 17, 18, 19] and len(train) == 15
    assert ColSplitter(5)(table) == (train, valid)
    with pytest.raises(KeyError) as e:
        ColSplitter("valid")(table)
    assert "'valid'" in str(e.value) and "'is_valid'" in str(e.value) and "help:" in str(e.value)


def test_train_test_splitter_stratified() -> None:
    labels = ["a"] * 10 + ["b"] * 20
    train, valid = TrainTestSplitter(0.2, seed=0, stratify=labels)(list(range(30)))
    check_partition((train, valid), 30)
    assert sum(labels[i] == "a" for i in valid) == 2 and sum(labels[i] == "b" for i in valid) == 4
    assert TrainTestSplitter(0.2, seed=0, stratify=labels)(list(range(30))) == (train, valid)
    check_partition(TrainTestSplitter(0.5, seed=3)(ITEMS), 10)
    with pytest.raises(ValueError, match=r"(?s)2 labels for 10 items.*help:"):
        TrainTestSplitter(stratify=["a", "b"])(ITEMS)
