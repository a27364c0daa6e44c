"""Diffusion and rectified flow: schedules, the forward process, targets, samplers and guidance."""

import pytest
import torch

from minisora.diffusion import (GaussianDiffusion, KnownFrames, RectifiedFlow, TimestepEmbedding, clip_error, guided,
                                make_objective)
from minisora.optim import EMA, warmup_cosine
from minisora.unet import UNet, UNetConfig


class Toy(torch.nn.Module):
    """A tiny conditional network on 2D points: enough to exercise every code path."""

    def __init__(self, out_scale: float = 1.0):
        super().__init__()
        self.time = TimestepEmbedding(16)
        self.label = torch.nn.Embedding(3, 16)
        self.net = torch.nn.Linear(2 + 16, 2)
        self.out_scale = out_scale

    def forward(self, x, time, cond):
        return self.out_scale * self.net(torch.cat([x, self.time(time) + self.label(cond)], dim=1))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_are_monotone_and_bounded(schedule):
    d = GaussianDiffusion(schedule)
    assert ((d.betas > 0) & (d.betas < 1)).all()
    assert (d.alpha_bars[1:] < d.alpha_bars[:-1]).all()  # more noise at every step
    assert d.alpha_bars[0] > 0.99 and d.alpha_bars[-1] < 1e-3  # from almost clean to almost pure noise
    assert ((d.posterior_variance >= 0) & (d.posterior_variance <= d.betas)).all()


def test_q_sample_matches_closed_form_mean_and_variance():
    d = GaussianDiffusion("linear")
    x0 = torch.tensor([[0.7, -0.3]]).repeat(200_000, 1)
    for step in (10, 300, 900):
        t = torch.full((len(x0),), step)
        x_t = d.q_sample(x0, t, torch.randn_like(x0))
        mean, var = d.q_mean_var(x0[:1], t[:1])
        torch.testing.assert_close(x_t.mean(0), mean[0], atol=0.01, rtol=0)
        torch.testing.assert_close(x_t.var(0), var[0], atol=0.01, rtol=0.02)


def test_q_sample_is_the_chain_of_single_steps():
    """Many single steps x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z give the closed form's statistics."""
    d = GaussianDiffusion("cosine", num_steps=50)
    x = torch.full((100_000, 1), 0.8)
    for t in range(30):
        x = (1 - d.betas[t]).sqrt().float() * x + d.betas[t].sqrt().float() * torch.randn_like(x)
    mean, var = d.q_mean_var(torch.tensor([[0.8]]), torch.tensor([29]))
    assert abs(float(x.mean()) - float(mean)) < 0.01 and abs(float(x.var()) - float(var)) < 0.01


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_targets_invert(target):
    d = GaussianDiffusion("cosine", target=target)
    x0, noise = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    t = torch.randint(0, 999, (8,))
    x_t = d.q_sample(x0, t, noise)
    x0_hat, eps_hat = d.x0_eps_from(d.target_from(x0, noise, t), x_t, t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eps_hat, noise, atol=1e-4, rtol=1e-4)


def test_ddim_with_eta_1_is_the_ddpm_posterior():
    d = GaussianDiffusion("linear")
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.tensor([500, 10, 999, 1])
    x_t = d.q_sample(x0, t, eps)
    mean, var = d.posterior(x0, x_t, t)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    step = d.ddim_step(x0, eps, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step, mean + var.sqrt() * z, atol=1e-5, rtol=1e-5)
    ddpm = d.ddpm_step(x0, x_t, t, torch.Generator().manual_seed(0))
    torch.testing.assert_close(step, ddpm, atol=1e-5, rtol=1e-5)


def test_ddim_eta_0_is_deterministic_and_lands_on_x0():
    d = GaussianDiffusion("linear")
    x0, eps, t = torch.randn(4, 2), torch.randn(4, 2), torch.full((4,), 0)
    assert torch.equal(d.ddim_step(x0, eps, t, t - 1), d.ddim_step(x0, eps, t, t - 1))
    torch.testing.assert_close(d.ddim_step(x0, eps, t, t - 1), x0)  # the last step returns the clean prediction


def test_guidance_scale_1_is_the_conditional_prediction_and_every_channel_is_guided():
    def model(x, t, c):
        return x * (1 + c[:, None, None, None].float()) + t[:, None, None, None]

    x, t = torch.randn(3, 6, 2, 2), torch.full((3,), 5.0)
    cond, null = torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(guided(model, x, t, cond, null, 1.0), model(x, t, cond))
    out = guided(model, x, t, cond, null, 4.0)
    expected = model(x, t, null) + 4.0 * (model(x, t, cond) - model(x, t, null))
    torch.testing.assert_close(out, expected)  # all 6 channels, not the first few
    torch.testing.assert_close(guided(model, x, t, cond, null, 0.0), model(x, t, null))
    with pytest.raises(ValueError, match="null condition"):
        guided(model, x, t, cond, None, 2.0)


def test_guidance_rescale_brings_the_spread_back_to_the_conditional_predictions():
    def model(x, t, c):
        return x * (1 + c[:, None, None, None].float())

    x, t = torch.randn(3, 4, 5, 5), torch.zeros(3)
    cond, null = torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long)
    plain = guided(model, x, t, cond, null, 4.0)
    torch.testing.assert_close(guided(model, x, t, cond, null, 4.0, rescale=0.0), plain)
    full = guided(model, x, t, cond, null, 4.0, rescale=1.0)
    spread = lambda v: v.flatten(1).std(1)  # per sample
    assert (spread(plain) > 1.5 * spread(model(x, t, cond))).all()  # guidance inflates the spread ...
    torch.testing.assert_close(spread(full), spread(model(x, t, cond)))  # ... rescale 1 takes it back, per sample
    torch.testing.assert_close(guided(model, x, t, cond, null, 4.0, rescale=0.7), 0.7 * full + 0.3 * plain)
    torch.testing.assert_close(guided(model, x, t, cond, null, 1.0, rescale=0.7), model(x, t, cond))  # unguided


@pytest.mark.parametrize("objective,sampler", [("ddpm", "ddim"), ("flow", "euler")])
def test_objectives_sample_with_their_guidance_rescale(objective, sampler):
    schedule = {"num_steps": 20} if objective == "ddpm" else {}
    model = lambda x, t, c: 0.1 * x + 0.05 * c[:, None].float()
    cond, null = torch.tensor([1, 2]), torch.zeros(2, dtype=torch.long)
    same = dict(guidance=4.0, steps=5, sampler=sampler, clip=None, noise=torch.ones(2, 3))
    plain = make_objective(objective, **schedule).sample(model, (2, 3), cond, null, **same)
    rescaled = make_objective(objective, guidance_rescale=0.7, **schedule).sample(model, (2, 3), cond, null, **same)
    assert not torch.allclose(plain, rescaled)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"guidance_rescale must be a weight in \[0, 1\]"):
            make_objective(objective, guidance_rescale=bad, **schedule)


@pytest.mark.parametrize("objective,sampler", [("ddpm", "ddim"), ("flow", "euler")])
def test_guidance_interval_guides_only_at_its_noise_levels(objective, sampler):
    calls, scale = [], 100 if objective == "ddpm" else 1000  # network time = level x (100 steps, or 1000)

    def model(x, time, c):
        calls.append((float(time[0]) / scale, len(x)))  # (noise level in [0, 1], batch) of each call
        return 0.1 * x + 0.01 * c[:, None].float()

    cond, null, run = torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long), {}
    schedule = {"num_steps": 100} if objective == "ddpm" else {}
    for interval in ((0.0, 1.0), (0.45, 1.0), (0.25, 0.65)):  # no step exactly on an end
        obj = make_objective(objective, guidance_interval=interval, **schedule)
        calls.clear()
        run[interval] = obj.sample(model, (3, 2), cond, null, guidance=3.0, steps=10, sampler=sampler, clip=None,
                                   noise=torch.ones(3, 2))
        lo, hi = interval
        assert [b for _, b in calls] == [6 if lo <= level <= hi else 3 for level, _ in calls]  # 2B: guided
        assert {b for _, b in calls} == ({6} if interval == (0.0, 1.0) else {3, 6})
    assert not torch.equal(run[(0.0, 1.0)], run[(0.45, 1.0)])
    # outside the interval the step is the conditional prediction's: guidance 1 everywhere gives the same
    # sample as an interval that holds no step
    plain = make_objective(objective, **schedule)
    empty = make_objective(objective, guidance_interval=(0.001, 0.002), **schedule)
    same = dict(steps=10, sampler=sampler, clip=None, noise=torch.ones(3, 2))
    torch.testing.assert_close(empty.sample(model, (3, 2), cond, null, 3.0, **same),
                               plain.sample(model, (3, 2), cond, null, 1.0, **same))


@pytest.mark.parametrize("interval", [(0.7, 0.2), (-0.1, 1.0), (0.0, 1.5), (0.5,), (0.5, 0.5), (float("nan"), 1.0)])
def test_guidance_interval_errors(interval):
    with pytest.raises(ValueError, match="guidance_interval must be two noise levels lo < hi in"):
        RectifiedFlow(guidance_interval=interval)
    with pytest.raises(ValueError, match="guidance_interval"):
        GaussianDiffusion(guidance_interval=interval)


@pytest.mark.parametrize("objective,sampler,steps", [("ddpm", "ddpm", None), ("ddpm", "ddim", 7), ("flow", "euler", 7)])
def test_samplers_shapes_and_seeds(objective, sampler, steps):
    obj = make_objective(objective, **({"num_steps": 20} if objective == "ddpm" else {}))
    model = Toy(out_scale=0.1)
    cond, null = torch.tensor([0, 1, 1, 0, 1]), torch.full((5,), 2)
    run = lambda seed: obj.sample(model, (5, 2), cond, null, guidance=2.0, steps=steps, sampler=sampler,
                                  generator=torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (5, 2) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampler_errors():
    d, f = GaussianDiffusion(num_steps=20), RectifiedFlow()
    model, cond = Toy(), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="sampler='ddim'"):
        d.sample(model, (2, 2), cond, steps=5, sampler="ddpm")
    with pytest.raises(ValueError, match="between 1 and 20"):
        d.sample(model, (2, 2), cond, steps=50, sampler="ddim")
    with pytest.raises(ValueError, match="unknown sampler"):
        f.sample(model, (2, 2), cond, sampler="ddim")
    with pytest.raises(ValueError, match="one condition per sample"):
        f.sample(model, (3, 2), cond)
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("score")
    with pytest.raises(ValueError, match="unknown schedule"):
        GaussianDiffusion("quadratic")


def test_rectified_flow_path_target_and_exact_euler():
    f = RectifiedFlow()
    x0, noise = torch.randn(6, 2), torch.randn(6, 2)
    assert torch.equal(f.q_sample(x0, torch.zeros(6), noise), x0)
    assert torch.equal(f.q_sample(x0, torch.ones(6), noise), noise)
    t = f.sample_t(100_000, "cpu", torch.Generator().manual_seed(0))
    assert 0 < float(t.min()) and float(t.max()) < 1 and abs(float(t.median()) - 0.5) < 0.01  # logit-normal
    # with the true velocity of a single point, Euler is exact on a straight path, even in one step
    oracle = lambda x, time, c: (x - x0[:1]) / (time / 1000).clamp(min=1e-8)[:, None]
    out = f.sample(oracle, (1, 2), torch.zeros(1, dtype=torch.long), steps=1, noise=noise[:1])
    torch.testing.assert_close(out, x0[:1])


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_a_small_model_learns_a_2d_distribution(objective):
    """Two clusters, one per label: after training, guided samples land on their label's cluster."""
    torch.manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    net = Toy()
    net.net = torch.nn.Sequential(torch.nn.Linear(18, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    obj = make_objective(objective, **({"num_steps": 100} if objective == "ddpm" else {}))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(400):
        label = torch.randint(0, 2, (256,))
        x0 = centres[label] + 0.1 * torch.randn(256, 2)
        label = label.masked_fill(torch.rand(256) < 0.1, 2)
        loss = obj.loss(net, x0, label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cond = torch.tensor([0, 1]).repeat(50)
    sampler = {"ddpm": "ddim", "flow": "euler"}[objective]
    x = obj.sample(net, (100, 2), cond, torch.full((100,), 2), guidance=1.5, steps=20, sampler=sampler, clip=None)
    assert (x - centres[cond]).norm(dim=1).median() < 0.5


def test_unet_shapes_zero_init_and_errors():
    model = UNet(UNetConfig(channels=(16, 32), emb_dim=32))
    x = torch.randn(3, 1, 28, 28)
    out = model(x, torch.tensor([0.0, 500.0, 999.0]), torch.tensor([0, 5, model.null_label]))
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 28, 28\), got \(3, 1, 32, 32\)"):
        model(torch.randn(3, 1, 32, 32), torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_ema_and_schedule():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.5 * before + 0.5 * model.weight)
    ema.update(model, step=0)  # warm-up: decay min(0.5, 1/10) = 0.1 at the first step
    torch.testing.assert_close(ema.model.weight, 0.1 * (0.5 * before + 0.5 * model.weight) + 0.9 * model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = warmup_cosine(opt, steps=100, warmup=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(max(lrs)) and lrs[-1] < 0.01
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.5)


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_shipped_denoisers_make_digits_the_evaluator_reads(objective):
    """A floor far under the measured accuracy (see the manifests): catches broken weights or samplers, not noise."""
    from minisora.train_denoiser import sample_digits, score_digits
    from minisora.unet import load_denoiser

    torch.set_num_threads(1)
    model, saved_objective = load_denoiser(objective)
    assert saved_objective == objective
    labels = torch.arange(10).repeat(2)
    images = sample_digits(model, objective, labels, guidance=3.0, steps=10, seed=0)
    assert images.shape == (20, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert score_digits(images, labels)["accuracy"] >= 0.6


def test_denoiser_checkpoint_errors(tmp_path):
    from minisora.digits import DATA_DIR
    from minisora.unet import load_denoiser

    with pytest.raises(FileNotFoundError):
        load_denoiser(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not a denoiser checkpoint"):
        load_denoiser(DATA_DIR / "vae_frame.pt")


class Recorder(torch.nn.Module):
    """A video 'network' that remembers what it was given and predicts x_t + time (per frame)."""

    def forward(self, x, time, cond):
        self.x, self.time = x, time if time.ndim == 2 else time[:, None].expand(-1, x.shape[2])  # (B, T)
        return x + self.time[:, None, :, None, None]


def test_known_frames_stay_clean_with_time_0_and_the_loss_ignores_them():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 6, 4, 4, generator=g)
    known = torch.tensor([[True, True, False, False, False, False], [False] * 6, [False, False, False, False, True, True]])
    net, flow = Recorder(), RectifiedFlow()
    t = torch.tensor([0.3, 0.6, 0.9])
    noise = torch.randn(x0.shape, generator=g)
    loss = flow.loss(net, x0, torch.zeros(3), t=t, noise=noise, known=known)
    frames = known[:, None, :, None, None].expand_as(x0)
    assert torch.equal(net.x[frames], x0[frames])  # known frames: the clean data
    assert torch.equal(net.x[~frames], flow.q_sample(x0, t, noise)[~frames])  # the others: noised
    assert torch.equal(net.time, (flow.time(t)[:, None] * ~known))  # time 0 where known
    # the loss is the mean over each clip's unknown frames, then over clips
    error = (net.x + net.time[:, None, :, None, None] - (noise - x0)) ** 2
    per_clip = torch.stack([error[i][:, ~known[i]].mean() for i in range(3)])
    torch.testing.assert_close(loss, per_clip.mean())
    with pytest.raises(ValueError, match="bool mask"):
        KnownFrames(net, known[:, :4], x0)


def test_the_frame_difference_term_weighs_an_alternating_error_1_plus_4_lambda():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 1, 4, 4, generator=g)
    sign = torch.tensor([1.0, -1.0] * 4)[None, None, :, None, None]  # (1, 1, 8, 1, 1): +a, -a, +a, ...
    everywhere = torch.ones(2, 8, dtype=torch.bool)
    squared = (a ** 2).flatten(1).mean(1)  # (2,)
    torch.testing.assert_close(clip_error(a * sign, everywhere, 0.5), squared * (1 + 4 * 0.5))  # alternating
    torch.testing.assert_close(clip_error(a.expand(-1, -1, 8, -1, -1), everywhere, 0.5), squared)  # steady: as MSE
    torch.testing.assert_close(clip_error(a * sign, everywhere), squared)  # lambda = 0: MSE
    # pairs with a given frame do not count: only frames 2 and 3 are generated in clip 0, 1..3 in clip 1
    generated = torch.tensor([[False, False, True, True] + [False] * 4, [False, True, True, True] + [False] * 4])
    error = torch.zeros(2, 3, 8, 4, 4)
    error[:, :, 0] = 100.0  # a given frame's error, not in the loss
    error[:, :, 2:4] = a * sign[:, :, 2:4]  # -a, +a
    expected = squared * torch.tensor([2 / 2 + 0.5 * 4 / 1, 2 / 3 + 0.5 * (1 + 4) / 2])  # 0 -> -a -> +a
    torch.testing.assert_close(clip_error(error, generated, 0.5), expected)


def test_the_loss_with_frame_difference_is_the_mean_of_clip_errors():
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 2, 6, 4, 4, generator=g), torch.randn(3, 2, 6, 4, 4, generator=g)
    known = torch.tensor([[True, True] + [False] * 4, [False] * 6, [False] * 4 + [True, True]])
    net, flow, t = Recorder(), RectifiedFlow(), torch.tensor([0.3, 0.6, 0.9])
    for k in (None, known):
        plain = flow.loss(net, x0, torch.zeros(3), t=t, noise=noise, known=k)
        loss = flow.loss(net, x0, torch.zeros(3), t=t, noise=noise, known=k, frame_difference=2.0)
        error = net.x + net.time[:, None, :, None, None] - (noise - x0)  # the Recorder's output minus the velocity
        generated = torch.ones(3, 6, dtype=torch.bool) if k is None else ~k
        torch.testing.assert_close(loss, clip_error(error, generated, 2.0).mean())
        assert loss > plain
    with pytest.raises(ValueError, match="frame_difference must be a finite number >= 0"):
        from minisora.train import TrainConfig
        TrainConfig(frame_difference=-1.0)


def test_a_guidance_ramp_lowers_text_guidance_by_the_distance_to_the_known_frames():
    """w_t = 1 + (w - 1) min(1, d_t / R), d_t the frames to the nearest known frame, in guided's extrapolation."""
    x0 = torch.zeros(3, 1, 8, 2, 2)
    known = torch.zeros(3, 8, dtype=torch.bool)
    known[0, :2] = True  # a forward extension
    known[1, 2:4] = known[1, 7] = True  # two known stretches: the nearest counts
    ramp = KnownFrames(Recorder(), known, x0, ramp=4.0).text_guidance(8.0)[:, 0, :, 0, 0]  # (3, T)
    expected = lambda d: [1 + 7 * min(1, di / 4) for di in d]
    torch.testing.assert_close(ramp[0], torch.tensor(expected([0, 0, 1, 2, 3, 4, 5, 6])))
    torch.testing.assert_close(ramp[1], torch.tensor(expected([2, 1, 0, 0, 1, 2, 1, 0])))
    assert ramp[2].tolist() == [8.0] * 8  # nothing known: the whole guidance everywhere
    assert KnownFrames(Recorder(), known, x0).text_guidance(8.0) == 8.0  # no ramp
    # in guided: out = out_null + w_t (out_cond - out_null), frame by frame
    net = KnownFrames(lambda x, time, cond: x + cond[:, None, None, None, None], known, x0, ramp=4.0)
    x = torch.randn(3, 1, 8, 2, 2)
    out = guided(net, x, torch.ones(3), torch.ones(3), torch.zeros(3), 8.0)
    shown = torch.where(known[:, None, :, None, None], x0, x)  # what the network sees
    torch.testing.assert_close(out, shown + ramp[:, None, :, None, None])  # out_null = shown, out_cond - out_null = 1
    torch.testing.assert_close(guided(net, x, torch.ones(3), torch.ones(3), torch.zeros(3), 1.0), shown + 1)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="guidance_ramp must be a number of frames >= 0"):
            KnownFrames(Recorder(), known, x0, ramp=bad)


def test_sampling_with_known_frames_keeps_them_and_guidance_doubles_the_mask():
    x0 = torch.randn(2, 1, 4, 3, 3)
    known = torch.tensor([[True, False, False, False], [False, False, True, True]])
    net = KnownFrames(Recorder(), known, x0)
    flow = RectifiedFlow()
    out = flow.sample(net, x0.shape, torch.zeros(2), torch.ones(2), guidance=3.0, steps=4)
    assert net.model.x.shape[0] == 4 and torch.equal(net.model.time[2:], net.model.time[:2])  # (cond, null)
    filled = net.fill(out)
    frames = known[:, None, :, None, None].expand_as(x0)
    assert torch.equal(filled[frames], x0[frames]) and torch.equal(filled[~frames], out[~frames])
