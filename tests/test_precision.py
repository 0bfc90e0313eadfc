"""precision=64, 'bf16-mixed' and '16-mixed' (GradScaler), each against a hand-written torch loop."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine import Callback, MisconfigurationException, Trainer
from plugins.precision import SCALER_STATE_KEY, MixedPrecisionPlugin, normalize_precision
from tests.optim_support import QUIET, Regressor, assert_same_weights, batches, fit, twin


class DtypeSpy(Regressor):
    """Records the dtypes seen inside training_step."""

    def __init__(self, **kwargs):
        super().__init__(lambda m: torch.optim.SGD(m.parameters(), lr=0.05), **kwargs)
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.seen.append((x.dtype, out.dtype, self.layer.weight.dtype, torch.zeros(1).dtype))
        return nn.functional.mse_loss(out.float() if out.dtype == torch.bfloat16 else out, y.to(out.dtype)
                                      if out.dtype == torch.float64 else y)


def test_precision_64_runs_everything_in_float64():
    model = DtypeSpy()
    reference = twin(model).double()
    fit(model, max_epochs=1, precision=64)

    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    for x, y in batches():
        nn.functional.mse_loss(reference(x.double()), y.double()).backward()
        opt.step()
        opt.zero_grad()

    assert set(model.seen) == {(torch.float64,) * 4}
    assert model.layer.weight.dtype == torch.float64
    assert_same_weights(model, reference, atol=1e-12)
    assert torch.get_default_dtype() == torch.float32  # restored after each step


def test_bf16_mixed_on_cpu_runs_matmuls_in_bf16_and_keeps_fp32_weights():
    model = DtypeSpy()
    reference = twin(model)
    fit(model, max_epochs=1, precision="bf16-mixed")

    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    for x, y in batches():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reference(x)
        nn.functional.mse_loss(out.float(), y).backward()
        opt.step()
        opt.zero_grad()

    assert set(model.seen) == {(torch.float32, torch.bfloat16, torch.float32, torch.float32)}
    assert model.layer.weight.dtype == torch.float32
    assert_same_weights(model, reference, atol=1e-6)


def test_bf16_mixed_also_covers_validation():
    seen = []

    class Val(DtypeSpy):
        def validation_step(self, batch, batch_idx):
            seen.append(self(batch[0]).dtype)

    fit(Val(), max_epochs=1, precision="bf16-mixed", limit_val_batches=1)
    assert seen == [torch.bfloat16]


@pytest.mark.parametrize("flag", [16, "16", "16-mixed"])
def test_16_mixed_on_a_cpu_only_machine_names_bf16_mixed(flag):
    assert normalize_precision(flag) == "16-mixed"
    with pytest.raises(MisconfigurationException, match="needs a CUDA GPU.*precision='bf16-mixed'"):
        fit(Regressor(), max_epochs=1, precision=flag)


def test_unknown_precision_is_an_error_at_trainer_init():
    with pytest.raises(MisconfigurationException, match="precision='8'.*'bf16-mixed'"):
        Trainer(precision="8", **QUIET)


def _hand_fp16_scaler(model, clip=None, epochs=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    unscaled = []
    for _ in range(epochs):
        for x, y in batches():
            with torch.autocast("cpu", dtype=torch.float16):
                out = model(x)
            scaler.scale(nn.functional.mse_loss(out.float(), y)).backward()
            scaler.unscale_(opt)
            unscaled.append(model.layer.weight.grad.clone())
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    return scaler, unscaled


class Fp16Model(Regressor):
    def __init__(self):
        super().__init__(lambda m: torch.optim.SGD(m.parameters(), lr=0.05))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x).float(), y)


def test_16_mixed_grad_scaler_matches_torch_loop():
    grads = []

    class Grads(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads.append(pl_module.layer.weight.grad.clone())

    model = Fp16Model()
    reference = twin(model)
    plugin = MixedPrecisionPlugin("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8))
    fit(model, max_epochs=1, plugins=[plugin], callbacks=[Grads()], gradient_clip_val=1.0)
    scaler, unscaled = _hand_fp16_scaler(reference, clip=1.0)

    assert_same_weights(model, reference, atol=1e-6)
    # on_before_optimizer_step sees the gradients unscaled (and not yet clipped)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, unscaled))
    assert plugin.scaler.get_scale() == scaler.get_scale()


def test_grad_scaler_state_travels_in_the_checkpoint():
    plugin = MixedPrecisionPlugin("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8,
                                                                                        growth_interval=3))
    trainer = fit(Fp16Model(), max_epochs=1, plugins=[plugin])
    trainer.save_checkpoint("amp.ckpt")
    state = torch.load("amp.ckpt", weights_only=True)[SCALER_STATE_KEY]
    assert state["scale"] == plugin.scaler.get_scale() and state["scale"] != 2.0 ** 8  # it grew

    fresh = MixedPrecisionPlugin("16-mixed", device="cpu")
    Trainer(max_epochs=2, plugins=[fresh], **QUIET).fit(Fp16Model(), ckpt_path="amp.ckpt")  # one more epoch
    reference = torch.amp.GradScaler("cpu")
    reference.load_state_dict(state)
    _run_scaler_for_one_epoch(reference)
    assert fresh.scaler.get_scale() == reference.get_scale()
    assert fresh.scaler.state_dict() == reference.state_dict()


def _run_scaler_for_one_epoch(scaler):
    model = twin(Fp16Model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in batches():
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        scaler.scale(nn.functional.mse_loss(out.float(), y)).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    return model, opt


def test_flag_and_plugin_together_is_a_clear_error():
    with pytest.raises(MisconfigurationException, match="Two precision plugins"):
        fit(Regressor(), max_epochs=1, precision="bf16-mixed", plugins=[MixedPrecisionPlugin("16-mixed", device="cpu")])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_16_mixed_on_cuda_matches_torch_loop():
    model = Fp16Model()
    reference = twin(model).cuda()
    fit(model, max_epochs=1, precision="16-mixed", accelerator="gpu", devices=1)
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cuda")
    for x, y in batches():
        x, y = x.cuda(), y.cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            out = reference(x)
        scaler.scale(nn.functional.mse_loss(out.float(), y)).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    assert_same_weights(model.cpu(), reference.cpu(), atol=1e-5)
