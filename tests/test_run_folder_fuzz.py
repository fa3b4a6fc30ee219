"""A run folder damaged at random (metrics.jsonl truncated, bytes flipped, lines deleted or
duplicated; summary.json edited or cut; the newest checkpoint cut), then loaded and resumed: the
only exceptions are fastwgan's own (naming the run folder), and no valid record is lost. One tiny
run is trained once and copied for every example."""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fastwgan
from fastwgan import checkpoint as ckpt

from _tiny import tiny_models

ARGS = dict(batch_size=16, n_critic=1, progress=False, eval_samples=0, plots=False, log_every=1,
            checkpoint_every=3, keep_checkpoints=5)


def _train(out, steps, **kw):
    G, D = tiny_models("mlp", width=8, z_dim=2)
    return fastwgan.train(G, D, "8gaussians", out=out, steps=steps, **{**ARGS, **kw})


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A finished 6-step run (checkpoints at 3 and 6) and the records the same folder, undamaged,
    holds once resumed to 8 steps, without their wall times."""
    root = tmp_path_factory.mktemp("fuzz")
    _train(root / "run", 6)
    shutil.copytree(root / "run", root / "clean", ignore=shutil.ignore_patterns(".fastwgan.lock"))
    _train(root / "clean", 8, resume=True)
    records = [_timeless(json.loads(s)) for s in (root / "clean" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    return root / "run", records


def _timeless(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "time"}


_METRICS_EDITS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 5)),
    st.tuples(st.just("duplicate"), st.integers(0, 5)),
)
_SUMMARY_EDITS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("width"), st.one_of(st.integers(-3, 10**13), st.text(max_size=3), st.none())),
    st.tuples(st.just("unknown-keyword"), st.text(min_size=1, max_size=5)),
)


def _edit_metrics(path: Path, edit: tuple) -> None:
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]
    kind = edit[0]
    if kind == "truncate":
        path.write_bytes(data[: int(edit[1] * len(data))])
    elif kind == "flip" and data:
        i = min(int(edit[1] * len(data)), len(data) - 1)
        path.write_bytes(data[:i] + bytes([data[i] ^ edit[2]]) + data[i + 1:])
    elif kind == "delete" and lines:
        del lines[edit[1] % len(lines)]
        path.write_bytes(b"".join(s + b"\n" for s in lines))
    elif kind == "duplicate" and lines:
        i = edit[1] % len(lines)
        lines.insert(i, lines[i])
        path.write_bytes(b"".join(s + b"\n" for s in lines))


def _edit_summary(path: Path, edit: tuple) -> None:
    if edit[0] == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(edit[1] * len(data))])
        return
    summary = json.loads(path.read_text())
    key = "width" if edit[0] == "width" else edit[1]
    summary["models"]["generator"]["kwargs"][key] = edit[1] if edit[0] == "width" else 1
    path.write_text(json.dumps(summary))


def _own_error(e: BaseException, run: Path) -> bool:
    """fastwgan's own refusals are ValueErrors (or OSErrors) that name the file or folder."""
    return isinstance(e, (ValueError, OSError)) and str(run) in str(e)


@settings(max_examples=12, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(metrics_edits=st.lists(_METRICS_EDITS, min_size=1, max_size=3),
       summary_edit=st.one_of(st.none(), _SUMMARY_EDITS),
       cut_newest_checkpoint=st.booleans())
def test_a_damaged_run_folder_resumes_or_refuses_and_loses_no_record(original, metrics_edits, summary_edit,
                                                                     cut_newest_checkpoint):
    source, uninterrupted = original
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(source, run, ignore=shutil.ignore_patterns(".fastwgan.lock"))
        for edit in metrics_edits:
            _edit_metrics(run / "metrics.jsonl", edit)
        if summary_edit is not None:
            _edit_summary(run / "summary.json", summary_edit)
        newest = ckpt.list_checkpoints(run / "checkpoints")[-1]
        if cut_newest_checkpoint:
            newest.write_bytes(newest.read_bytes()[:1000])
        resumed_step = 3 if cut_newest_checkpoint else 6
        damaged = (run / "metrics.jsonl").read_bytes().split(b"\n")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                assert fastwgan.load(run).step == resumed_step
            except Exception as e:  # noqa: BLE001
                assert _own_error(e, run), repr(e)
            _train(run, 8, resume=True)

        final = (run / "metrics.jsonl").read_bytes().split(b"\n")[:-1]
        records = [json.loads(s) for s in final]
        # one record per logged step; up to the checkpoint resumed from, each the undamaged run's
        # (after it, the resumed run's own: with a linear lr decay over 8 steps, not 6, when it
        # fell back to step 3)
        assert [r["step"] for r in records] == list(range(1, 9))
        assert [_timeless(r) for r in records[:resumed_step]] == uninterrupted[:resumed_step]
        if resumed_step == 6:
            assert [_timeless(r) for r in records] == uninterrupted  # resume is exact
        side = run / "metrics.jsonl.set-aside"
        aside = set(side.read_bytes().split(b"\n")) if side.exists() else set()
        for line in damaged:  # every line of the damaged file: kept, set aside, or superseded
            if not line.strip() or line in final or line in aside:
                continue
            rec = json.loads(line)  # not set aside, so a record: superseded by the resumed run
            assert rec["step"] > resumed_step or _timeless(rec) == uninterrupted[rec["step"] - 1], line
