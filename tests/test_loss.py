"""The variational bound: the Gaussian sampler's KL, the model's losses, gradients and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import drawcli_gaussian
from drawcli import checkpoint
from drawcli.config import DrawConfig
from drawcli.model import DRAW


def gaussian(z_size: int, enc_size: int) -> drawcli_gaussian.GaussianSampler:
    return drawcli_gaussian.GaussianSampler(DrawConfig(z_size=z_size, enc_size=enc_size)).double()


def test_gaussian_kl_matches_torch_distributions_and_reparameterises() -> None:
    """KL = sum_j KL(N(mu_j, sigma_j) || N(0, 1)) with [mu, log sigma] = W h + b; z = mu + sigma eps."""
    torch.manual_seed(0)
    sampler = gaussian(z_size=3, enc_size=5)
    weight = torch.randn(6, 5, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    with torch.no_grad():
        sampler.posterior.weight.copy_(weight)
        sampler.posterior.bias.copy_(bias)
    h = torch.randn(4, 5, dtype=torch.float64)
    params = h @ weight.T + bias
    mu, sigma = params[:, :3], params[:, 3:].exp()

    eps = torch.randn(4, 3, dtype=torch.float64)
    z, kl = sampler(h, eps)

    expected = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1)
    assert kl.shape == (4,)
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z, mu + sigma * eps, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("mu", "log_sigma", "expected"),
    [
        # 0.5 * ((1 + 1 - 0 - 1) + (0 + e^-2 + 2 - 1)) = 1 + e^-2 / 2
        ([1.0, 0.0], [0.0, -1.0], 1.0 + 0.5 * math.exp(-2.0)),
        # the prior itself: the -1 per dimension cancels sigma^2 = 1 exactly
        ([0.0, 0.0], [0.0, 0.0], 0.0),
        # 0.5 * ((4 + e^2 - 2 - 1) + (0.25 + 1 - 0 - 1)) = 0.5 * (1 + e^2 + 0.25)
        ([2.0, -0.5], [1.0, 0.0], 0.5 * (1.25 + math.exp(2.0))),
    ],
)
def test_gaussian_kl_hand_values(mu: list[float], log_sigma: list[float], expected: float) -> None:
    """KL(N(mu, sigma) || N(0, I)) = 0.5 sum_j (mu^2 + sigma^2 - log sigma^2 - 1), by hand."""
    sampler = gaussian(z_size=2, enc_size=1)
    with torch.no_grad():
        sampler.posterior.weight.zero_()
        sampler.posterior.bias.copy_(torch.tensor(mu + log_sigma))
    _, kl = sampler(torch.zeros(1, 1, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64))
    assert kl.item() == pytest.approx(expected, abs=1e-12)


def test_prior_is_the_standard_normal_noise() -> None:
    """The Gaussian prior N(0, I) maps its standard-normal noise to z unchanged."""
    sampler = gaussian(z_size=3, enc_size=2)
    noise = torch.randn(5, 3)
    assert sampler.noise_size == 3
    torch.testing.assert_close(sampler.prior(noise), noise, rtol=0, atol=0)


def test_model_noise_is_one_draw_for_all_glimpses(tiny_config) -> None:
    """Without explicit noise the model draws (T, B, noise_size) at once; passing the same
    noise reproduces the result exactly, so results are a function of the noise alone."""
    model = DRAW(tiny_config(glimpses=4))
    x = torch.ones(3, 1, 8, 8)
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(5)
    noise = torch.randn(4, 3, model.sampler.noise_size)
    b = model(x, noise=noise)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.kl, b.kl)
    # image i's result depends only on its own noise column
    c = model(x[:1], noise=noise[:, :1])
    torch.testing.assert_close(c.recon, b.recon[:1])


def binary_images(batch: int, cfg: DrawConfig, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, *cfg.image_shape, generator=gen) > 0.5).float()


def run_seeded(cfg: DrawConfig, x: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    model = DRAW(cfg)
    return model(x)


@pytest.mark.parametrize("attention", ["filterbank", "none"])
def test_model_loss_is_finite_positive_and_deterministic(tiny_config, attention: str) -> None:
    """loss = recon + sum_t kl > 0; recon >= 0; kl (B, T) >= 0; same seed -> bit-identical numbers."""
    cfg = tiny_config(channels=3, height=6, width=10, reader=attention, writer=attention)
    x = binary_images(4, cfg)
    out = run_seeded(cfg, x)
    assert out.recon.shape == (4,)
    assert out.kl.shape == (4, cfg.glimpses)
    assert torch.isfinite(out.loss).all()
    assert (out.loss > 0).all()
    assert (out.recon >= 0).all()
    assert (out.kl >= 0).all()
    torch.testing.assert_close(out.loss, out.recon + out.kl.sum(dim=1), rtol=0, atol=0)

    again = run_seeded(cfg, x)
    assert torch.equal(out.recon, again.recon)
    assert torch.equal(out.kl, again.kl)
    other = run_seeded(cfg, x, seed=1)
    assert not torch.equal(out.kl, other.kl)


@pytest.mark.parametrize("attention", ["filterbank", "none"])
def test_zero_writer_keeps_canvas_grey_and_recon_is_log2_per_pixel(tiny_config, attention: str) -> None:
    """All-zero writer weights: canvas stays at logit 0 (p = 0.5), recon = C*H*W*log 2 per image."""
    cfg = tiny_config(channels=2, height=6, width=10, reader=attention, writer=attention)
    torch.manual_seed(0)
    model = DRAW(cfg)
    with torch.no_grad():
        for p in model.writer.parameters():
            p.zero_()
    if attention == "filterbank":  # log gamma = 0 would be fine too; zero patch alone must suffice
        with torch.no_grad():
            model.writer.window.bias.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1, 0.7]))
    x = binary_images(3, cfg, seed=5)
    out = model(x, record=True)
    expected = 2 * 6 * 10 * math.log(2.0)
    torch.testing.assert_close(out.recon, torch.full((3,), expected), rtol=1e-6, atol=0)
    assert torch.equal(out.canvases, torch.full_like(out.canvases, 0.5))


@pytest.mark.parametrize("attention", ["filterbank", "none"])
def test_gradients_reach_every_parameter(tiny_config, attention: str) -> None:
    """loss.mean().backward() gives every parameter a finite, non-zero gradient."""
    cfg = tiny_config(reader=attention, writer=attention)
    torch.manual_seed(0)
    model = DRAW(cfg)
    model(binary_images(2, cfg)).loss.mean().backward()
    names = [name for name, _ in model.named_parameters()]
    assert any(n.startswith("reader.") for n in names) == (attention == "filterbank")
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_record_returns_canvases_and_windows_for_attention(tiny_config) -> None:
    """record=True: canvases (T, B, C, H, W) in [0, 1]; T read and T write windows of (B,) fields."""
    cfg = tiny_config(channels=3, height=6, width=10)
    torch.manual_seed(0)
    model = DRAW(cfg)
    x = binary_images(2, cfg)
    out = model(x, record=True)
    assert out.canvases.shape == (cfg.glimpses, 2, 3, 6, 10)
    assert (out.canvases >= 0).all() and (out.canvases <= 1).all()
    assert len(out.read_windows) == cfg.glimpses
    assert len(out.write_windows) == cfg.glimpses
    assert all(w.size == cfg.read_size and w.gx.shape == (2,) for w in out.read_windows)
    assert all(w.size == cfg.write_size and w.sigma2.shape == (2,) for w in out.write_windows)
    # The last recorded canvas is the one the loss is computed from.
    last = out.canvases[-1].clamp(1e-7, 1 - 1e-7)
    recon = -(x * last.log() + (1 - x) * (1 - last).log()).flatten(1).sum(1)
    torch.testing.assert_close(recon, out.recon, rtol=1e-4, atol=1e-4)
    plain = model(x)
    assert plain.canvases is None and plain.read_windows is None and plain.write_windows is None


def test_record_without_attention_has_no_windows(tiny_config) -> None:
    """The no-attention reader and writer record canvases but no windows (None, not a list)."""
    cfg = tiny_config(reader="none", writer="no-attention")
    torch.manual_seed(0)
    out = DRAW(cfg)(binary_images(2, cfg), record=True)
    assert out.canvases.shape == (cfg.glimpses, 2, 1, 8, 8)
    assert out.read_windows is None
    assert out.write_windows is None


@pytest.mark.parametrize("attention", ["filterbank", "none"])
def test_generate_shapes_range_and_seed(tiny_config, attention: str) -> None:
    """generate(n): canvases (T, n, C, H, W) in [0, 1], identical under the same torch.manual_seed."""
    cfg = tiny_config(channels=3, height=6, width=10, reader=attention, writer=attention)
    torch.manual_seed(0)
    model = DRAW(cfg)
    torch.manual_seed(42)
    first = model.generate(5)
    torch.manual_seed(42)
    second = model.generate(5)
    torch.manual_seed(43)
    third = model.generate(5)
    assert first.canvases.shape == (cfg.glimpses, 5, 3, 6, 10)
    assert (first.canvases >= 0).all() and (first.canvases <= 1).all()
    assert torch.equal(first.canvases, second.canvases)
    assert not torch.equal(first.canvases, third.canvases)
    if attention == "filterbank":
        assert len(first.write_windows) == cfg.glimpses
        assert first.write_windows[0].gx.shape == (5,)
    else:
        assert first.write_windows is None


def test_paper_default_parameter_counts() -> None:
    """Paper MNIST settings: 961,515 parameters with attention, 2,751,448 without."""
    attn = DRAW(DrawConfig())
    assert sum(p.numel() for p in attn.parameters()) == 961_515
    assert checkpoint.parameter_counts(attn) == {
        "reader": 5 * (256 + 1),  # window Linear(256, 5)
        "writer": 5 * (256 + 1) + 25 * (256 + 1),  # window + 5x5 patch
        "sampler": 200 * (256 + 1),  # [mu, log sigma] of z = 100
        "encoder": 4 * 256 * (8 + 256 + 256 + 2),  # LSTMCell(2*2*2 + 256, 256)
        "decoder": 4 * 256 * (100 + 256 + 2),  # LSTMCell(100, 256)
    }
    plain = DRAW(DrawConfig(reader="none", writer="none"))
    assert sum(p.numel() for p in plain.parameters()) == 2_751_448


def test_canvas_accumulates_writes_and_reader_sees_the_error_image(tiny_config) -> None:
    """Constant write b per glimpse: canvas_t = sigmoid(t b) (eq. 8); reader gets x_hat = x - sigmoid(c_{t-1}) (eq. 3)."""
    cfg = tiny_config(channels=1, height=2, width=3, read_size=1, write_size=1, reader="none", writer="none")
    torch.manual_seed(0)
    model = DRAW(cfg)
    b = torch.tensor([-1.0, -0.5, 0.0, 0.25, 0.5, 1.5])
    with torch.no_grad():
        model.writer.canvas.weight.zero_()
        model.writer.canvas.bias.copy_(b)
    seen: list[torch.Tensor] = []
    model.reader.register_forward_hook(lambda module, args, out: seen.append(args[1].detach().clone()))
    x = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]])
    out = model(x, record=True)
    b_img = b.view(1, 1, 2, 3)
    for t in range(cfg.glimpses):
        torch.testing.assert_close(out.canvases[t], torch.sigmoid((t + 1) * b_img), rtol=0, atol=1e-6)
        torch.testing.assert_close(seen[t], x - torch.sigmoid(t * b_img), rtol=0, atol=1e-6)
    # -log Bernoulli(x | sigmoid(T b)), by hand, pixel by pixel
    expected = 0.0
    for xi, bi in zip(x.flatten().tolist(), b.tolist()):
        p = 1 / (1 + math.exp(-cfg.glimpses * bi))
        expected -= xi * math.log(p) + (1 - xi) * math.log(1 - p)
    assert out.recon.item() == pytest.approx(expected, abs=1e-5)


def reference_forward(model: DRAW, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 3-9 written out with the model's own parts: (recon (B,), kl (B, T))."""
    cfg = model.config
    h_enc = c_enc = x.new_zeros(x.shape[0], cfg.enc_size)
    h_dec = c_dec = x.new_zeros(x.shape[0], cfg.dec_size)
    canvas = torch.zeros_like(x)
    kls = []
    for t in range(cfg.glimpses):
        x_hat = x - torch.sigmoid(canvas)
        r, _ = model.reader(x, x_hat, h_dec)
        h_enc, c_enc = model.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
        z, kl = model.sampler(h_enc, noise[t])
        h_dec, c_dec = model.decoder(z, (h_dec, c_dec))
        canvas = canvas + model.writer(h_dec)[0]
        kls.append(kl)
    p = torch.sigmoid(canvas)
    recon = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(dim=1)
    return recon, torch.stack(kls, dim=1)


@pytest.mark.parametrize("attention", ["filterbank", "none"])
def test_forward_and_gradients_match_reference_recurrence(tiny_config, attention: str) -> None:
    """Same seed: the model's nats and parameter gradients equal a written-out DRAW recurrence."""
    cfg = tiny_config(channels=2, height=6, width=10, reader=attention, writer=attention)
    torch.manual_seed(0)
    model = DRAW(cfg).double()
    x = binary_images(3, cfg, seed=9).double()

    noise = torch.randn(cfg.glimpses, 3, model.sampler.noise_size, dtype=torch.float64)
    out = model(x, noise=noise)
    out.loss.sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    recon, kl = reference_forward(model, x, noise)
    (recon + kl.sum(dim=1)).sum().backward()

    torch.testing.assert_close(out.recon, recon, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.kl, kl, rtol=1e-10, atol=1e-10)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_compiled_glimpse_matches_eager(tiny_config) -> None:
    """--compile changes speed, not numbers: the compiled glimpse gives the eager nats and gradients."""
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=2))
    x = binary_images(4, model.config, seed=3)
    noise = torch.randn(2, 4, model.sampler.noise_size)
    eager = model(x, noise=noise)
    eager.loss.sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.compile_glimpses()
    compiled = model(x, noise=noise)
    compiled.loss.sum().backward()
    torch.testing.assert_close(compiled.recon, eager.recon, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(compiled.kl, eager.kl, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_glimpse_builds_one_graph_per_batch_shape(tiny_config) -> None:
    """A new batch size compiles one graph (glimpse 0 included) and a seen one reuses it."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=3))
    model.compile_glimpses()
    graphs = []
    for batch in (4, 2, 4):
        model(binary_images(batch, model.config, seed=batch)).loss.sum().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 2, 2]
