"""Checkpoints load with ``weights_only=True``: a planted object never runs, damaged files are
skipped, files of the first format are refused (and can be upgraded), random states restore bit
for bit from plain data."""
from __future__ import annotations

import random
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fastwgan import checkpoint as ckpt
from fastwgan.data import as_data_source
from fastwgan.optim import ClippedRMSprop

from _malicious import plant_malicious_checkpoint
from _tiny import tiny_models


def _genuine_state(step: int) -> dict:
    """What a run saves, from real objects: models with buffers, both optimizers after a step,
    a data source part-way through, the random states, history and config."""
    G, D = tiny_models("dcgan")
    opt_d, opt_g = ClippedRMSprop(D.parameters(), lr=1e-4), torch.optim.Adam(G.parameters(), lr=1e-4)
    for m, opt in ((D, opt_d), (G, opt_g)):
        for p in m.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    source = as_data_source("8gaussians", batch_size=4, seed=0)
    source.next_batch(4)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    return dict(step=step, generator=G.state_dict(), critic=D.state_dict(), opt_d=opt_d.state_dict(),
                opt_g=opt_g.state_dict(), data=source.state_dict(), rng=ckpt.rng_state(),
                history=[{"step": 1, "loss_d": 0.5}], evals=[], config={"lr": 1e-4, "betas": (0.5, 0.9)},
                scaler_d=scaler.state_dict(), scaler_g=scaler.state_dict())


def _draws() -> tuple:
    """A few numbers from every global stream, including the cached second normals."""
    return (random.random(), random.gauss(0, 1), random.gauss(0, 1), np.random.rand(3).tolist(),
            np.random.standard_normal(3).tolist(), torch.rand(4).tolist(), torch.randn(3).tolist())


def test_rng_state_round_trips_bit_exactly_through_a_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves Python's gauss_next set
    np.random.standard_normal(1)  # leaves NumPy's cached gaussian set
    state = _genuine_state(1)
    assert state["rng"]["python"]["gauss_next"] is not None and state["rng"]["numpy"]["has_gauss"] == 1
    path = ckpt.save_checkpoint(state, tmp_path, 1)
    expected = _draws()
    assert _draws() != expected  # negative control: the streams moved
    loaded = ckpt.load_checkpoint(path)
    assert loaded["format"] == ckpt.FORMAT
    torch.load(path, weights_only=True)  # plain torch.load with the safe unpickler reads it too
    ckpt.set_rng_state(loaded["rng"])
    assert _draws() == expected


def test_set_rng_state_refuses_a_malformed_state_before_changing_anything():
    before = ckpt.rng_state()
    bad = ckpt.rng_state()
    del bad["numpy"]["keys"]
    with pytest.raises(ValueError, match="random state is malformed"):
        ckpt.set_rng_state(bad)
    with pytest.raises(ValueError, match="random state is malformed"):
        ckpt.set_rng_state({"python": random.getstate(), "numpy": np.random.get_state(),
                            "torch": torch.get_rng_state()})  # the first format's tuples
    after = ckpt.rng_state()
    assert after["python"] == before["python"] and torch.equal(after["torch"], before["torch"])


@pytest.mark.parametrize("entry, bad, kind", [
    (("rng", "numpy"), np.zeros(3, dtype=np.uint32), "numpy.ndarray"),
    (("history",), [{"loss": np.float64(0.5)}], "numpy.float64"),
    (("config",), {"path": Path("/tmp")}, "Path"),
])
def test_save_refuses_state_that_is_not_plain_data(tmp_path, entry, bad, kind):
    state = _genuine_state(1)
    target = state
    for key in entry[:-1]:
        target = target[key]
    target[entry[-1]] = bad
    with pytest.raises(TypeError, match=kind) as e:
        ckpt.save_checkpoint(state, tmp_path, 1)
    assert repr(entry[0]) in str(e.value) and "weights_only=True" in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing written


def _sources():
    x = torch.randn(10, 2)
    y = torch.randint(0, 3, (10,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    return {
        "toy": lambda: as_data_source("8gaussians", batch_size=4, seed=0),
        "finite": lambda: as_data_source((x, y), batch_size=4, seed=0),
        "iterable": lambda: as_data_source(loader, batch_size=4, seed=0),
        "sampler": lambda: as_data_source(lambda n: torch.randn(n, 2), batch_size=4, seed=0),
    }


@pytest.mark.parametrize("kind", list(_sources()))
def test_every_data_source_state_is_plain_data(tmp_path, kind):
    make = _sources()[kind]
    src = make()
    for _ in range(3):  # part-way through an epoch (the iterable source keeps a buffer)
        src.next_batch(4)
    state = _genuine_state(1)
    state["data"] = src.state_dict()
    ckpt.check_plain(state["data"])
    torch.manual_seed(5)
    want = src.next_batch(4)[0]
    loaded = ckpt.load_checkpoint(ckpt.save_checkpoint(state, tmp_path, 1))
    other = make()
    other.load_state_dict(loaded["data"])
    torch.manual_seed(5)
    assert torch.equal(other.next_batch(4)[0], want)  # the loaded state is the live one


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        ckpt.save_checkpoint(_genuine_state(step), folder, step)
    marker = tmp_path / "pwned"
    planted = plant_malicious_checkpoint(folder, marker)
    assert planted == ckpt.checkpoint_path(folder, 3)

    # negative control: the payload is live when unpickled the unsafe way
    control = tmp_path / "control"
    plant_malicious_checkpoint(folder, control, base=ckpt.checkpoint_path(folder, 2), step=9)
    torch.load(ckpt.checkpoint_path(folder, 9), weights_only=False)
    assert control.exists()
    ckpt.checkpoint_path(folder, 9).unlink()

    with pytest.raises(ckpt.UnsafeCheckpointError) as e:
        ckpt.load_checkpoint(planted)
    msg = str(e.value)
    assert str(planted) in msg and "objects other than tensors and plain data" in msg
    assert "not loaded" in msg and "builtins.exec" in msg
    assert isinstance(e.value, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not skipped with a warning either
        with pytest.raises(ckpt.UnsafeCheckpointError, match=str(planted)):
            ckpt.load_latest(folder)
    assert not marker.exists()
    assert [p.name for p in ckpt.list_checkpoints(folder)] == [
        "ckpt-00000001.pt", "ckpt-00000002.pt", "ckpt-00000003.pt"]  # nothing deleted


def test_malicious_file_behind_a_damaged_newest_one_is_still_an_error(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(_genuine_state(1), folder, 1)
    marker = tmp_path / "pwned"
    plant_malicious_checkpoint(folder, marker)  # step 2
    ckpt.checkpoint_path(folder, 3).write_bytes(ckpt.checkpoint_path(folder, 1).read_bytes()[:500])
    with pytest.warns(RuntimeWarning, match="ckpt-00000003.pt is truncated or corrupted"):
        with pytest.raises(ckpt.UnsafeCheckpointError, match="ckpt-00000002.pt"):
            ckpt.load_latest(folder)
    assert not marker.exists()


def _flip_first_pickle_byte(path: Path) -> None:
    """Damage the pickle (its PROTO opcode) without touching the zip's stored CRC."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    data = bytearray(path.read_bytes())
    h = info.header_offset  # local header: 30 bytes, then its own name and extra field
    start = h + 30 + int.from_bytes(data[h + 26:h + 28], "little") + int.from_bytes(data[h + 28:h + 30], "little")
    assert data[start] == 0x80  # PROTO
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "pickle byte flipped", "empty"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        ckpt.save_checkpoint(_genuine_state(step), folder, step)
    newest = ckpt.checkpoint_path(folder, 2)
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        _flip_first_pickle_byte(newest)
    with pytest.raises(ckpt.CheckpointError, match=str(newest)):
        ckpt.load_checkpoint(newest)
    with pytest.warns(RuntimeWarning, match="falling back"):
        state, path = ckpt.load_latest(folder)
    assert path == ckpt.checkpoint_path(folder, 1) and state["step"] == 1


def test_incomplete_checkpoint_names_the_missing_entry_and_is_skipped(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(_genuine_state(1), folder, 1)
    state = _genuine_state(2)
    del state["opt_g"]
    path = ckpt.save_checkpoint(state, folder, 2)
    assert "opt_g" not in ckpt.load_checkpoint(path)  # nothing required: loads
    with pytest.raises(ckpt.CheckpointError, match="no 'opt_g' entry") as e:
        ckpt.load_checkpoint(path, required=ckpt.REQUIRED_KEYS)
    assert str(path) in str(e.value)
    with pytest.warns(RuntimeWarning, match="opt_g"):
        assert ckpt.load_latest(folder, required=ckpt.REQUIRED_KEYS)[1] == ckpt.checkpoint_path(folder, 1)


def _legacy_checkpoint(path: Path) -> dict:
    """A checkpoint as fastwgan wrote it before format 2: NumPy's state as NumPy objects."""
    state = _genuine_state(4)
    random.gauss(0, 1)
    np.random.standard_normal(1)
    state["rng"] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save(state, path)
    return state


def test_first_format_checkpoint_is_refused_naming_the_upgrade(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    path = ckpt.checkpoint_path(folder, 4)
    _legacy_checkpoint(path)
    with pytest.raises(ckpt.LegacyCheckpointError) as e:
        ckpt.load_checkpoint(path)
    assert str(path) in str(e.value) and "older fastwgan" in str(e.value) and "upgrade_checkpoint" in str(e.value)
    with pytest.raises(ckpt.LegacyCheckpointError):  # never skipped as if damaged
        ckpt.load_latest(folder)


def test_upgrade_checkpoint_converts_the_first_format_losslessly(tmp_path):
    path = tmp_path / "ckpt-00000004.pt"
    old = _legacy_checkpoint(path)
    original = path.read_bytes()
    expected = _draws_after(old["rng"])
    assert ckpt.upgrade_checkpoint(path) == path
    assert (tmp_path / "ckpt-00000004.pt.legacy").read_bytes() == original  # kept, untouched
    new = ckpt.load_checkpoint(path)
    assert new["step"] == 4 and new["format"] == ckpt.FORMAT
    for key in ("generator", "critic"):
        assert all(torch.equal(new[key][k], old[key][k]) for k in old[key])
    ckpt.set_rng_state(new["rng"])
    assert _draws() == expected


def _draws_after(legacy_rng: dict) -> tuple:
    random.setstate(legacy_rng["python"])
    np.random.set_state(legacy_rng["numpy"])
    torch.set_rng_state(legacy_rng["torch"])
    return _draws()


def test_checkpoint_of_an_unknown_format_is_refused(tmp_path):
    state = _genuine_state(1)
    path = ckpt.save_checkpoint(state, tmp_path, 1)
    raw = torch.load(path, weights_only=True)
    raw["format"] = ckpt.FORMAT + 1
    torch.save(raw, path)
    with pytest.raises(ckpt.LegacyCheckpointError, match=f"format {ckpt.FORMAT + 1}"):
        ckpt.load_checkpoint(path)


def test_a_foreign_pickle_in_a_checkpoint_name_is_unsafe_not_damaged(tmp_path):
    """Any intact pickle holding a class is refused, also one with no fastwgan content at all."""
    path = tmp_path / "ckpt-00000001.pt"
    torch.save({"step": 1, "x": shutil.copy}, path)  # a function: the safe unpickler refuses it
    with pytest.raises(ckpt.UnsafeCheckpointError, match="shutil.copy"):
        ckpt.load_checkpoint(path)
