"""Property-based fuzzing of `load_learner` (security issue 12): a real export with one JSON value, the zip's
bytes or the safetensors header mutated either loads a learner that predicts, or raises ExportError; never
another exception, never more than LIMIT_BYTES of torch allocations, never more than SECONDS."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _export_attack_kit import LIMIT_BYTES, SECONDS, Meter, export_fixture, members, watched, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.train import ExportError, load_learner
from lamina.vision import ImageDataLoaders, Resize, vision_learner

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RAN: dict[str, int] = {}  # cases run per test, for the report
PREDICT_FAILED: list[str] = []  # loaded, but predict failed (a known gap, reported, see _check)


@pytest.fixture(scope="module")
def files(mnist_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """The two exports to mutate, each with an input its learner predicts on."""
    tmp = tmp_path_factory.mktemp("fuzz")
    fx = export_fixture()
    mlp = fx.make_learner(tmp).export(tmp / "mlp.lamina")
    dls = ImageDataLoaders.from_folder(
        mnist_small, valid_pct=0.2, seed=0, bs=8, item_tfms=Resize(28), num_workers=0, device="cpu"
    )
    vision = vision_learner(dls, "test_resnet", pretrained=False, lin_ftrs=16).export(tmp / "vision.lamina")
    return {"mlp": (mlp, fx.INPUTS[0]), "vision": (vision, sorted(mnist_small.rglob("*.png"))[0])}


def _paths(x: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the recipe (the checksum left out: changing it is refused trivially)."""
    out = [at] if at else []
    if isinstance(x, dict):
        for k, v in x.items():
            out += _paths(v, (*at, k)) if k != "weights_sha256" else []
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, (*at, i))
    return out


_HUGE = st.sampled_from([0, -1, 2**31, 2**63, 10**20, 8193, 60000, 50_000_000, -(10**9)])
_NAMES = st.sampled_from(
    ["hf-hub:timm/resnet18", "local-dir:/tmp", "../../etc/passwd", "timm/resnet18", "os.system", "x" * 5000]
)
_LEAF = st.one_of(
    _HUGE,
    st.integers(-3, 40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    _NAMES,
    st.none(),
    st.booleans(),
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _check(path: Path, item: Any, name: str) -> None:
    """The invariant: an ExportError, or a learner that predicts; within the memory and time bounds. Over
    the time bound alone, the case runs once more: a file that is slow to load is slow twice, a pause of
    the process (a collection of the whole suite's garbage) is not."""
    RAN[name] = RAN.get(name, 0) + 1
    meter = _load_and_predict(path, item, name)
    if meter.seconds >= SECONDS and not meter.refused and meter.used <= meter.limit:
        meter = _load_and_predict(path, item, name)
    meter.check()


def _load_and_predict(path: Path, item: Any, name: str) -> Meter:
    with watched() as meter:
        try:
            learn = load_learner(path)
        except ExportError as e:
            assert "help:" in str(e), str(e)[:300]
            learn = None
        if learn is not None:
            RAN[f"{name}-loaded"] = RAN.get(f"{name}-loaded", 0) + 1
            try:
                learn.predict(item)
            except (IndexError, KeyError, MemoryError):
                raise
            except Exception as e:  # a recipe with a transform left out: the model gets the wrong input
                PREDICT_FAILED.append(f"{type(e).__name__}: {str(e)[:80]}")
    return meter


def _json_case(m: dict[str, bytes], path: tuple[Any, ...], value: Any, digits: int) -> dict[str, bytes]:
    """One value of learner.json replaced (or by an integer of `digits` digits)."""
    doc = json.loads(m["learner.json"])
    _set(doc, path, "BIGINT" if digits else value)
    return {**m, "learner.json": json.dumps(doc).replace('"BIGINT"', "7" * digits).encode()}


def _header_case(
    m: dict[str, bytes], name: str, field: str, value: Any, length: int | None
) -> dict[str, bytes]:
    """One entry (or field) of the safetensors header replaced, the checksum made right again."""
    w = m["weights.safetensors"]
    n = int.from_bytes(w[:8], "little")
    h = json.loads(w[8 : 8 + n])
    if field == "entry":
        h[name] = value
    else:
        h[name][field] = value
    hb = json.dumps(h).encode()
    weights = (len(hb) if length is None else length).to_bytes(8, "little") + hb + w[8 + n :]
    recipe = json.loads(m["learner.json"])
    recipe["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    return {"learner.json": json.dumps(recipe).encode(), "weights.safetensors": weights}


def _bytes_case(raw: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    b = bytearray(raw[:cut])
    for at, byte in edits:
        if at < len(b):
            b[at] = byte
    return bytes(b)


@pytest.mark.parametrize("which", ["mlp", "vision"])
def test_fuzz_load_learner(which: str, files: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    """One mutation of a real export: a JSON value, the safetensors header, or the zip's bytes."""
    src, item = files[which]
    m, raw = members(src), src.read_bytes()
    w = m["weights.safetensors"]
    tensors = sorted(k for k in json.loads(w[8 : 8 + int.from_bytes(w[:8], "little")]) if k != "__metadata__")
    json_case = st.builds(
        _json_case,
        st.just(m),
        st.sampled_from(_paths(json.loads(m["learner.json"]))),
        _VALUE,
        st.sampled_from([0, 0, 0, 5000]),
    )
    header_case = st.builds(
        _header_case,
        st.just(m),
        st.sampled_from(tensors),
        st.sampled_from(["shape", "dtype", "data_offsets", "entry"]),
        st.one_of(
            _VALUE,
            st.lists(_HUGE | st.integers(0, 16), max_size=4),
            st.sampled_from(["F32", "F16", "I64", "U8", "F8_E4M3", "BOOL"]),
        ),
        st.sampled_from([None, None, 0, 2**63, 2**40]),
    )
    bytes_case = st.builds(
        _bytes_case,
        st.just(raw),
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=4),
        st.integers(0, len(raw)) | st.just(len(raw)),
    )

    @FUZZ
    @given(case=st.one_of(json_case, json_case, header_case, bytes_case))
    def run(case: dict[str, bytes] | bytes) -> None:
        f = tmp_path / "f.lamina"
        if isinstance(case, bytes):
            f.write_bytes(case)
        else:
            write(f, case)
        _check(f, item, which)

    run()
    print(
        f"fuzzed {which} export: {RAN.get(which, 0)} cases, {RAN.get(f'{which}-loaded', 0)} loaded; ", end=""
    )
    print(f"loaded but failed to predict so far: {len(PREDICT_FAILED)} {sorted(set(PREDICT_FAILED))[:5]}")


_PEAK = """
import json, sys
import timm
import lamina.vision
from lamina.train import ExportError, load_learner
timm.list_models()

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

out = {}
for path in sys.argv[1:]:
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak RSS (VmHWM) to the current RSS
        f.write("5")
    before = status("VmRSS:")
    try:
        learn = load_learner(path)
        out[path] = ["loaded", status("VmHWM:") - before]
        del learn
    except ExportError:
        out[path] = ["refused", status("VmHWM:") - before]
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_peak_memory_of_load_learner_is_bounded_by_the_file(
    files: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    """Real memory (peak RSS in a fresh process, Linux), not only torch's allocations: a 2 MB file that
    asks for a 192 MB head costs next to nothing; the accepted file at most its size x 4 + 100 MB."""
    vision, _ = files["vision"]
    m = members(vision)
    recipe = json.loads(m["learner.json"])
    recipe["model"]["kwargs"]["n_out"] = 3_000_000
    crafted = write(tmp_path / "crafted.lamina", {**m, "learner.json": json.dumps(recipe).encode()})
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(crafted), str(vision)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    (kind_c, extra_c), (kind_v, extra_v) = r[str(crafted)], r[str(vision)]
    size = vision.stat().st_size
    print(f"load_learner peak extra RSS: refused {extra_c / 2**20:.1f} MB, accepted {extra_v / 2**20:.1f} MB")
    assert kind_c == "refused" and extra_c <= 50 * 2**20, f"the crafted file took {extra_c / 2**20:.0f} MB"
    assert kind_v == "loaded" and extra_v <= 4 * size + LIMIT_BYTES
