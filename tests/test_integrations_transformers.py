"""ProbeCallback in a real Hugging Face Trainer run: a tiny GPT-2 (from a config, no download), a few CPU steps.

The negative control of every reaction is a GPT-2 whose MLP input weights are zeroed: every hidden unit of
``mlp.c_fc`` then computes the same output (its bias), which the probe reports at step 0 as ``symmetric_units``
and ``vanishing_activations`` errors; the healthy model raises no verdict. (The first update breaks this
symmetry, because ``mlp.c_proj`` sends every unit a different gradient: later probes are healthy, which the
"warn" test checks too.)
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("tensorboard")
transformers = pytest.importorskip("transformers")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from initlab.integrations.tensorboard import summary  # noqa: E402
from initlab.integrations.transformers import ProbeCallback, ProbeWarning  # noqa: E402
from initlab.probing.health import HealthError  # noqa: E402

VOCAB, SEQ, EXAMPLES, BATCH = 64, 16, 32, 8


@pytest.fixture(autouse=True)
def _quiet():
    transformers.utils.logging.set_verbosity_error()
    yield
    transformers.utils.logging.set_verbosity_warning()


def gpt2(zero_mlp: bool = False) -> torch.nn.Module:
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=SEQ, use_cache=False,
                                  bos_token_id=0, eos_token_id=0, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(cfg)
    if zero_mlp:
        with torch.no_grad():
            for block in model.transformer.h:
                block.mlp.c_fc.weight.zero_()
    return model


def dataset() -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(0, VOCAB, (EXAMPLES, SEQ), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "labels": row} for row in ids]


def trainer(model, tmp_path, max_steps: int = 4) -> transformers.Trainer:
    # dropout is on (0.1): a probe that moved the global RNG would change the training's dropout masks
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, max_steps=max_steps, report_to=[],
        use_cpu=True, logging_steps=2, save_strategy="no", disable_tqdm=True, learning_rate=1e-3, seed=0)
    return transformers.Trainer(model=model, args=args, train_dataset=dataset())


def _train(tr: transformers.Trainer) -> None:
    with torch.random.fork_rng(devices=[]):
        tr.train()


def test_healthy_run_logs_the_probe_and_trains_exactly_as_without_it(tmp_path):
    plain = trainer(gpt2(), tmp_path)
    _train(plain)
    model = gpt2()
    tr = trainer(model, tmp_path)
    cb = ProbeCallback(every=2, tensorboard=tmp_path / "tb").attach(tr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)  # healthy: no warning
        _train(tr)
    assert cb.steps == [0, 2, 4] and tr.state.global_step == 4 and cb.unhealthy == []
    assert all(r.healthy and r.backward == "loss" and r.batch_size == EXAMPLES for r in cb.results)
    # what reached Trainer.log (so every report_to logger): the summary of each probe, at its step
    probe_logs = [h for h in tr.state.log_history if "initlab/errors" in h]
    assert [h["step"] for h in probe_logs] == [0, 2, 4]
    for h, r, logged in zip(probe_logs, cb.results, cb.logged):
        expected = {f"initlab/{k}": v for k, v in summary(r.layers, r.verdicts).items()}
        assert {k: v for k, v in h.items() if k.startswith("initlab/")} == expected == logged
        assert h["initlab/act_std_max"] == max(s.act_std for s in r.layers)
        assert h["initlab/errors"] == 0 and not any(k.startswith("initlab/verdict/") for k in h)
    assert cb.results[0]["lm_head"].act_std != cb.results[2]["lm_head"].act_std  # the weights moved
    # the probe changed nothing: the Trainer's own loss logs, the weights and the global RNG are those of a run
    # without the callback
    losses = [(h["step"], h["loss"]) for h in tr.state.log_history if "loss" in h]
    assert losses == [(h["step"], h["loss"]) for h in plain.state.log_history if "loss" in h] and len(losses) == 2
    for (name, p), q in zip(model.named_parameters(), plain.model.parameters()):
        assert torch.equal(p, q), name
    assert model.training is plain.model.training
    # TensorBoard: the per-layer records of each probe, read back
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    events = acc.Scalars("act_std/transformer.h.0.mlp.c_fc")
    assert [e.step for e in events] == [0, 2, 4]
    np.testing.assert_allclose([e.value for e in events], [r["transformer.h.0.mlp.c_fc"].act_std for r in cb.results],
                               rtol=1e-6)  # float32 storage
    assert [e.value for e in acc.Scalars("verdicts/total")] == [0.0, 0.0, 0.0]
    assert len(acc.Histograms("activations/lm_head")) == 3


def test_unhealthy_model_stops_the_training_with_stop(tmp_path):
    tr = trainer(gpt2(zero_mlp=True), tmp_path, max_steps=6)
    cb = ProbeCallback(every=2, on_unhealthy="stop", tensorboard=tmp_path / "tb").attach(tr)
    with pytest.warns(ProbeWarning, match="step 0: unhealthy .*symmetric_units.*stopping"):
        _train(tr)
    # stopped at step 0; the Trainer looks at should_training_stop after a step, so one step ran (not 6)
    assert tr.state.global_step == 1 and cb.steps == [0]
    ((step, verdicts),) = cb.unhealthy
    assert step == 0 and {"symmetric_units", "vanishing_activations"} <= {v.code for v in verdicts}
    (log,) = [h for h in tr.state.log_history if "initlab/errors" in h]
    assert log["initlab/verdict/symmetric_units"] == 1.0 and log["initlab/errors"] >= 2
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("verdicts/symmetric_units")] == [1.0]


def test_warn_keeps_training_and_ignore_and_ignored_codes_stay_silent(tmp_path):
    tr = trainer(gpt2(zero_mlp=True), tmp_path)
    cb = ProbeCallback(every=2).attach(tr)  # on_unhealthy="warn" by default
    with pytest.warns(ProbeWarning, match="step 0: unhealthy"):
        _train(tr)
    # warned at step 0 and trained on; one update broke the symmetry, so steps 2 and 4 are healthy
    assert tr.state.global_step == 4 and cb.steps == [0, 2, 4] and [s for s, _ in cb.unhealthy] == [0]
    assert [r.healthy for r in cb.results] == [False, True, True]
    codes = {v.code for _, vs in cb.unhealthy for v in vs}
    for cb_kwargs in ({"on_unhealthy": "ignore"}, {"on_unhealthy": "stop", "ignore": tuple(codes)}):
        tr = trainer(gpt2(zero_mlp=True), tmp_path, max_steps=2)
        cb = ProbeCallback(every=1, **cb_kwargs).attach(tr)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ProbeWarning)
            _train(tr)
        assert tr.state.global_step == 2 and cb.steps == [0, 1, 2], cb_kwargs
        assert (cb.unhealthy != []) is (cb_kwargs["on_unhealthy"] == "ignore")  # seen, but not acted upon


def test_raise_refuses_to_start_and_leaves_the_model_as_it_was(tmp_path):
    model = gpt2(zero_mlp=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr = trainer(model, tmp_path)
    ProbeCallback(on_unhealthy="raise").attach(tr)
    with pytest.raises(HealthError, match="symmetric_units"):
        _train(tr)
    assert tr.state.global_step == 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_a_batch_given_at_construction_is_the_probe_batch(tmp_path):
    ids = torch.randint(0, VOCAB, (12, SEQ), generator=torch.Generator().manual_seed(5))
    tr = trainer(gpt2(), tmp_path, max_steps=1)
    cb = ProbeCallback(every=10, batch={"input_ids": ids}, thresholds={"min_batch": 16}).attach(tr)
    _train(tr)
    # no labels: the gradient of a random cotangent; 12 examples, not the dataset's
    assert cb.steps == [0] and cb.results[0].batch_size == 12 and cb.results[0].backward == "cotangent"
    # the thresholds reach the probe: 12 examples are below min_batch=16, so dead units are not judged
    assert any("too small" in n for n in cb.results[0].notes)
    tr = trainer(gpt2(), tmp_path, max_steps=1)
    cb = ProbeCallback(every=10, batch_size=9).attach(tr)
    _train(tr)
    assert cb.results[0].batch_size == 9 and cb.results[0].backward == "loss"
    assert not any("too small" in n for n in cb.results[0].notes)  # 9 >= the default min_batch 8


def test_bad_arguments_and_a_callback_that_was_not_attached(tmp_path):
    cases = [({"every": 0}, ValueError, "every"), ({"every": 1.5}, TypeError, "every"),
             ({"on_unhealthy": "halt"}, ValueError, "on_unhealthy must be one of 'warn', 'stop', 'raise', 'ignore'"),
             ({"batch": [1, 2]}, TypeError, "batch must be None or a dict"),
             ({"ignore": "dead_units"}, TypeError, "ignore must be a tuple"),
             ({"tensorboard": 5}, TypeError, "tensorboard must be None or a folder"),
             ({"batch_size": 0}, ValueError, "batch_size"),
             ({"thresholds": {"nope": 1}}, ValueError, "thresholds: unknown name")]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            ProbeCallback(**kwargs)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="tensorboard .*is a file"):
        ProbeCallback(tensorboard=tmp_path / "afile")
    with pytest.raises(ValueError, match="thresholds: unknown name"):  # refused before the folder is made
        ProbeCallback(thresholds={"nope": 1}, tensorboard=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
        with pytest.raises(ImportError, match=r"tensorboard: .*needs the tensorboard package"):
            ProbeCallback(tensorboard=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
    ProbeCallback(tensorboard=tmp_path / "tb")  # the control: with the package, the folder is made at once
    assert (tmp_path / "tb").is_dir()
    with pytest.raises(TypeError, match="trainer must be a transformers.Trainer"):
        ProbeCallback().attach(object())
    tr = trainer(gpt2(), tmp_path, max_steps=1)
    tr.add_callback(ProbeCallback())
    with pytest.raises(RuntimeError, match=r"attach\(trainer\)"):
        _train(tr)
    assert tr.state.global_step == 0


def test_the_default_batch_is_collated_without_moving_any_global_rng():
    import random
    from types import SimpleNamespace

    def noisy_collate(examples):  # a masking collator draws random numbers from all three generators
        ids = torch.stack([e["input_ids"] for e in examples])
        keep = torch.rand(ids.shape) > 0.15 + 0 * np.random.rand() + 0 * random.random()
        return {"input_ids": ids, "labels": torch.where(keep, ids, -100)}

    loader = SimpleNamespace(dataset=dataset(), collate_fn=noisy_collate)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    batch = ProbeCallback(batch_size=6)._first_examples(loader)
    assert batch["input_ids"].shape == (6, SEQ) and (batch["labels"] == -100).any()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    with pytest.raises(ValueError, match="cannot be indexed"):
        ProbeCallback()._first_examples(SimpleNamespace(dataset=iter([]), collate_fn=noisy_collate))


class _BreakAt(transformers.TrainerCallback):
    """Zeroes the MLP input weights and biases at the end of optimizer step ``step`` (before a later callback's
    probe of that step): the model turns unhealthy mid-run. (Zeroed one step earlier, Adam's momentum would
    already have made the units differ again by the probe.)"""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for block in model.transformer.h:  # the bias too: four steps have trained it apart
                    block.mlp.c_fc.weight.zero_()
                    block.mlp.c_fc.bias.zero_()


def test_a_model_that_breaks_mid_run_stops_at_the_next_probe_and_reaches_report_to(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "hf-tb"))
    tr = trainer(gpt2(), tmp_path, max_steps=8)
    tr.args.report_to = ["tensorboard"]  # the Trainer's own TensorBoard logger, one of its report_to loggers
    tr.add_callback(_BreakAt(4))  # before the probe callback: it breaks the weights, then step 4 is probed
    tr.add_callback(transformers.integrations.TensorBoardCallback)
    cb = ProbeCallback(every=2, on_unhealthy="stop").attach(tr)
    with pytest.warns(ProbeWarning, match="step 4: unhealthy"):
        _train(tr)
    # healthy at 0 and 2; broken at step 4, whose probe stops the run right after that step (not at 8)
    assert cb.steps == [0, 2, 4] and [r.healthy for r in cb.results] == [True, True, False]
    assert tr.state.global_step == 4 and [s for s, _ in cb.unhealthy] == [4]
    # what the Trainer's TensorBoard logger wrote: the probe's summary, under its "train/" prefix
    acc = EventAccumulator(str(tmp_path / "hf-tb"), size_guidance={"scalars": 0})
    acc.Reload()
    errors = acc.Scalars("train/initlab/errors")
    assert [e.step for e in errors] == [0, 2, 4]
    assert [e.value for e in errors] == [log["initlab/errors"] for log in cb.logged] and errors[-1].value >= 1
