"""The input options shared by `initlab init`, `initlab doctor` and `initlab lsuv` (initlab.cli._inputs):
--input-shape, --tokens, --data NAME|FILE.npz and --batch."""

import zipfile

import numpy as np
import pytest
import torch

from initlab.cli import main

MODELS = '''
import torch
from torch import nn

VOCAB = 128


class TinyTokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 32)
        self.fc = nn.Linear(32, 32)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, ids):
        if ids.max() >= 0:  # data-dependent control flow: torch.fx cannot trace this model
            h = torch.relu(self.fc(self.emb(ids)))
        else:
            h = self.emb(ids)
        return self.head(h)


def tokens():
    return TinyTokenModel()


def mlp():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
'''


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "initlab_cli_input_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return "initlab_cli_input_models"


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "batch.npz"
    np.savez(path, x=rng.standard_normal((64, 8)).astype(np.float32), y=rng.integers(0, 4, 64).astype(np.int64))
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------------
# init with token ids


def test_init_token_model_with_tokens(models, capsys):
    code, out, err = run(capsys, "init", f"{models}:tokens", "--input-shape", "2,16", "--tokens", "128", "--seed",
                         "0")
    assert code == 0, err
    assert "traced by hooks" in out and "0 untouched" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line and line.split()[0].endswith(("weight", "bias"))}
    assert "Embedding" in rows["emb.weight"] and "Normal()" in rows["emb.weight"]
    # the forward pass on the token ids shows the ReLU before the head: He gain sqrt(2)
    assert "He(gain=1.4142135623730951)" in rows["head.weight"]
    assert "warnings:" not in out


def test_init_token_model_without_inputs_falls_back_to_registration_order(models, capsys):
    code, out, _ = run(capsys, "init", f"{models}:tokens", "--seed", "0")
    assert code == 0
    assert "traced by modules" in out and "Pass example_inputs" in out
    head = next(line for line in out.splitlines() if line.startswith("head.weight"))
    assert "He(gain=1.0)" in head  # the ReLU is invisible without a forward pass


def test_token_ids_lie_in_the_vocabulary(models, capsys):
    # ids are drawn in [0, VOCAB): 128 fits the 128-row embedding, 129 draws an id it does not have
    assert run(capsys, "init", f"{models}:tokens", "--input-shape", "64,16", "--tokens", "128")[0] == 0
    code, _, err = run(capsys, "init", f"{models}:tokens", "--input-shape", "64,16", "--tokens", "4096")
    assert code == 2 and "--tokens 4096" in err and "IndexError" in err  # the options that built the ids


BAD_OPTIONS = [
    (["--tokens", "128"], "--tokens needs --input-shape"),
    (["--data", "NPZ", "--tokens", "128"], "--tokens goes with --input-shape"),
    (["--input-shape", "2,16", "--tokens", "0"], "--tokens must be an int >= 1; got 0"),
    (["--input-shape", "2,16", "--batch", "0"], "--batch must be an int >= 1; got 0"),
    (["--data", "NPZ", "--batch", "0"], "--batch must be an int >= 1; got 0"),
    (["--input-shape", "2,a"], "--input-shape must be comma-separated positive ints"),
]


@pytest.mark.parametrize("command, argv, message", [
    (command, argv, message) for command in ("init", "doctor", "lsuv") for argv, message in BAD_OPTIONS
    # doctor and lsuv require an input option: argparse rejects `--tokens` alone before the command runs
    if command == "init" or "--input-shape" in argv or "--data" in argv
])
def test_bad_input_options_are_errors_naming_the_option(command, argv, message, models, npz, capsys):
    model = f"{models}:tokens" if command == "init" else f"{models}:mlp"
    argv = [npz if a == "NPZ" else a for a in argv]
    code, out, err = run(capsys, command, model, *argv)
    assert code == 2
    assert f"initlab {command}: error: {message}" in err
    assert out == ""


def test_input_shape_and_data_are_exclusive(models, npz, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", f"{models}:mlp", "--input-shape", "64,8", "--data", npz])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["doctor", "lsuv"])
def test_doctor_and_lsuv_need_an_input(command, models, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, f"{models}:mlp"])
    assert exc.value.code == 2
    assert "--input-shape" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# doctor and lsuv on --data FILE.npz and --input-shape


def test_doctor_on_npz_data(models, npz, capsys):
    code, out, err = run(capsys, "doctor", f"{models}:mlp", "--data", npz)
    assert code == 0, err
    assert "on a batch of 64 (your data, backward by cotangent" in out and "healthy" in out
    code, out, _ = run(capsys, "doctor", f"{models}:mlp", "--data", npz, "--labels", "--batch", "10")
    assert code == 0
    assert "on a batch of 10 (your data, backward by loss" in out


def test_doctor_on_input_shape(models, capsys):
    code, out, _ = run(capsys, "doctor", f"{models}:mlp", "--input-shape", "64,8")
    assert code == 0
    assert "on a batch of 64 (synthetic N(0, 1) inputs, backward by cotangent" in out
    code, out, _ = run(capsys, "doctor", f"{models}:mlp", "--input-shape", "64,8", "--batch", "16")
    assert code == 0 and "on a batch of 16 (synthetic" in out  # --batch replaces the first dimension


def test_doctor_labels_need_y(models, tmp_path, capsys):
    path = tmp_path / "no_labels.npz"
    np.savez(path, x=np.zeros((8, 8), np.float32))
    code, _, err = run(capsys, "doctor", f"{models}:mlp", "--data", str(path), "--labels")
    assert code == 2 and "has no array 'y'" in err
    code, _, err = run(capsys, "doctor", f"{models}:mlp", "--input-shape", "8,8", "--labels")
    assert code == 2 and "--labels needs --data" in err


@pytest.mark.parametrize("source", ["npz", "shape"])
def test_lsuv_on_npz_data_and_input_shape(source, models, npz, tmp_path, capsys):
    inputs = ["--data", npz] if source == "npz" else ["--input-shape", "64,8"]
    saved = tmp_path / f"{source}.pt"
    code, out, err = run(capsys, "lsuv", f"{models}:mlp", *inputs, "--save", str(saved))
    assert code == 0, err
    assert out.count("converged") == 2 and "2 rescaled" in out
    weights = torch.load(saved)
    x = torch.from_numpy(np.load(npz)["x"]) if source == "npz" else torch.randn(64, 8, generator=torch.Generator()
                                                                                 .manual_seed(0))
    # the rescaled first layer has unit output std on the very batch it was fitted on (tol 2%)
    assert float((x @ weights["0.weight"].T + weights["0.bias"]).std()) == pytest.approx(1.0, rel=0.02)


def test_npz_without_x_uses_its_first_array_and_prefers_x(models, tmp_path, capsys):
    rng = np.random.default_rng(1)
    only = tmp_path / "only.npz"
    np.savez(only, inputs=rng.standard_normal((32, 8)).astype(np.float32))
    assert run(capsys, "doctor", f"{models}:mlp", "--data", str(only))[0] == 0
    both = tmp_path / "both.npz"  # a 3-feature first array: the 8-input model fails if it is taken instead of x
    np.savez(both, a=rng.standard_normal((32, 3)).astype(np.float32), x=rng.standard_normal((32, 8)).astype(np.float32))
    assert run(capsys, "lsuv", f"{models}:mlp", "--data", str(both))[0] == 0
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, a=rng.standard_normal((32, 3)).astype(np.float32))
    code, _, err = run(capsys, "lsuv", f"{models}:mlp", "--data", str(wrong))
    assert code == 2 and "failed on inputs" in err


# --------------------------------------------------------------------------------------------------
# unreadable --data files


@pytest.mark.parametrize("command", ["doctor", "lsuv"])
def test_random_bytes_as_npz_is_a_clear_error(command, models, tmp_path, capsys):
    path = tmp_path / "noise.npz"
    data = np.random.default_rng(0).bytes(256)
    assert not data.startswith((b"PK", b"\x93NUMPY"))  # neither a zip nor a .npy
    path.write_bytes(data)
    code, out, err = run(capsys, command, f"{models}:mlp", "--data", str(path))
    assert code == 2 and out == ""
    assert f"initlab {command}: error: --data {path}: " in err and ".npz" in err
    assert "pickle" not in err


def test_missing_and_empty_npz(models, tmp_path, capsys):
    missing = tmp_path / "missing.npz"
    code, _, err = run(capsys, "doctor", f"{models}:mlp", "--data", str(missing))
    assert code == 2 and f"--data {missing}" in err
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    code, _, err = run(capsys, "doctor", f"{models}:mlp", "--data", str(empty))
    assert code == 2 and f"--data {empty}" in err


def truncated(tmp_path, npz):
    path = tmp_path / "truncated.npz"  # an interrupted copy: a zip header, no central directory
    path.write_bytes(open(npz, "rb").read()[:100])
    return path


def object_array(tmp_path, npz):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    return path


def zip_of_text(tmp_path, npz):
    path = tmp_path / "text.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not an array")
    return path


# a truncated zip, an object array (never unpickled) and a zip of non-arrays: found by this test as an uncaught
# zipfile.BadZipFile, an allow_pickle hint and a torch TypeError, none naming --data (fixed since)
@pytest.mark.parametrize("make", [truncated, object_array, zip_of_text])
def test_unreadable_npz_is_a_clear_error(make, models, npz, tmp_path, capsys):
    path = make(tmp_path, npz)
    code, out, err = run(capsys, "doctor", f"{models}:mlp", "--data", str(path))
    assert code == 2 and out == ""
    assert f"initlab doctor: error: --data {path}: " in err and "pickle" not in err
