"""Diffusion (DDPM, DDIM) and rectified flow: how a denoiser becomes a generator.

Two objectives share one interface, so any denoiser ``model(x_t, time, cond)`` can be trained and
sampled with either and the notebooks can compare them:

- :class:`GaussianDiffusion` (Ho et al. 2020, arXiv 2006.11239): a fixed noise schedule over
  ``T = 1000`` steps, closed-form q(x_t | x_0), a network that predicts epsilon, x_0 or v,
  ancestral DDPM sampling and DDIM (Song et al. 2020, arXiv 2010.02502) with any number of steps.
- :class:`RectifiedFlow` (Liu et al. 2022, arXiv 2209.03003; Esser et al. 2024, arXiv 2403.03206):
  a straight path x_t = (1 - t) x_0 + t eps, a velocity target, logit-normal times, Euler steps.

Both call ``loss(model, x0, cond)`` and ``sample(model, shape, cond, null, guidance, steps)``.
The network sees a ``time`` in [0, 1000) in both cases (the DDPM step, or 1000 t for the flow),
so one timestep embedding serves both.

Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) is :func:`guided`: the
conditional and the null-conditioned predictions of **every** output channel are combined. Each objective
can guide only inside a guidance interval of noise levels (``guidance_interval``, Kynkaanniemi et al. 2024), and
scale the guided output back to the conditional one's spread (``guidance_rescale``, Lin et al. 2024).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .patches import sincos_1d

TIME_SCALE = 1000  # the network's time input runs over [0, TIME_SCALE)
TARGETS = ("eps", "x0", "v")
SCHEDULES = ("linear", "cosine")
SAMPLERS = {"ddpm": ("ddpm", "ddim"), "flow": ("euler",)}
FAST_SAMPLER = {"ddpm": "ddim", "flow": "euler"}  # what to sample with by default, in a few dozen steps


# ----------------------------------------------------------------------------- guidance

def guided(model, x: torch.Tensor, time: torch.Tensor, cond: torch.Tensor, null: torch.Tensor | None = None,
           scale: float = 1.0, rescale: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance: ``out = out(x, null) + scale * (out(x, cond) - out(x, null))``.

    ``null`` is the condition that means "no condition" (e.g. the label 10 for 10 digit classes, or the
    text encoder's null prompt), given explicitly with the same shape as ``cond``. Every channel of the
    output is guided: some public DiT code guides only the first three channels, which silently leaves
    the others unguided. ``scale = 1`` is the plain conditional prediction (one forward pass);
    ``scale = 0`` the unconditional one.

    ``rescale`` phi > 0 is CFG-rescale (Lin et al. 2024, arXiv 2305.08891, section 3.4): guidance inflates the
    output's spread, which draws strokes too bold, so the guided output is scaled back to the conditional one's
    standard deviation per sample and mixed with weight phi: out = phi out std(out_cond) / std(out) + (1 - phi) out.

    For a :class:`KnownFrames` model with a guidance ramp, ``scale`` is weighted frame by frame
    (``KnownFrames.text_guidance``).
    """
    if scale == 1.0 or null is None:
        if scale != 1.0:
            raise ValueError(f"guidance scale {scale} needs a null condition, got null=None")
        return model(x, time, cond)
    both = model(torch.cat([x, x]), torch.cat([time, time]), torch.cat([cond, null]))  # (2B, ...)
    out_cond, out_null = both.chunk(2)  # (B, ...) each: all channels, not a slice of them
    if isinstance(model, KnownFrames):
        scale = model.text_guidance(scale)  # (B, 1, T, 1, 1) with a guidance ramp, else the number
    out = out_null + scale * (out_cond - out_null)
    if rescale:
        dims = tuple(range(1, out.dim()))  # every value of a sample
        out = rescale * out * out_cond.std(dims, keepdim=True) / out.std(dims, keepdim=True) + (1 - rescale) * out
    return out


def _check_sampling(cond: torch.Tensor, null: torch.Tensor | None, batch: int, guidance: float,
                    steps: int | None) -> None:
    """Clear errors for sampling settings: one condition per sample, a finite guidance scale, steps >= 1."""
    if not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number (1: no guidance), got {guidance}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a whole number of sampler steps >= 1, got {steps!r}")
    if len(cond) != batch:
        raise ValueError(f"expected one condition per sample ({batch}), got {len(cond)}")
    if null is not None and null.shape != cond.shape:
        raise ValueError(f"null condition must have the condition's shape {tuple(cond.shape)}, got {tuple(null.shape)}")


def check_guidance_interval(interval: tuple[float, float]) -> tuple[float, float]:
    """A guidance interval [lo, hi] of noise levels with 0 <= lo < hi <= 1, as a tuple of floats."""
    lo, hi = (float(x) for x in interval) if len(interval) == 2 else (math.nan, math.nan)
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"guidance_interval must be two noise levels lo < hi in [0, 1] (0, 1: guide at every "
                         f"step), got {tuple(interval)}")
    return lo, hi


def check_guidance_rescale(rescale: float) -> float:
    """A CFG-rescale weight phi in [0, 1] (0: plain guidance), as a float."""
    if not 0 <= float(rescale) <= 1:
        raise ValueError(f"guidance_rescale must be a weight in [0, 1] (0: plain guidance), got {rescale}")
    return float(rescale)


def check_guidance_ramp(ramp: float) -> float:
    """A guidance ramp (``KnownFrames.text_guidance``): a finite number of frames >= 0 (0: off), as a float."""
    if not 0 <= float(ramp) < math.inf:
        raise ValueError(f"guidance_ramp must be a number of frames >= 0 (0: the same text guidance on every frame), "
                         f"got {ramp!r}")
    return float(ramp)


def _broadcast(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to multiply a batch of any shape."""
    return values.reshape(-1, *([1] * (x.ndim - 1)))


# ----------------------------------------------------------------------------- conditioning frames

class WithInputs:
    """A denoiser with per-clip keyword inputs bound, called like any denoiser: net(x, time, cond) =
    model(x, time, cond, **inputs). Each input (B, ...) is repeated to the batch it is called with (2B under
    classifier-free guidance, as :class:`KnownFrames` repeats its mask)."""

    def __init__(self, model, **inputs: torch.Tensor):
        self.model, self.inputs = model, inputs

    def __call__(self, x: torch.Tensor, time: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model(x, time, cond, **{k: v.repeat(len(x) // len(v), *[1] * (v.ndim - 1))
                                             for k, v in self.inputs.items()})


class KnownFrames:
    """Conditioning frames by masks: ``KnownFrames(model, known, x0)`` is the model with some frames given.

    For videos (B, C, T, H, W) and a mask ``known`` (B, T), every call puts the clean frames x0 back
    into the known positions and gives them time 0 ("this frame is not noisy"), so the network sees
    x_in = known ? x0 : x_t and time_in (B, T) = known ? 0 : time. The same trained network then does
    text-to-video (nothing known), prediction and image-to-video (a prefix), extension backwards (a
    suffix), interpolation and loops (both ends). Any sampler can use it; guidance doubles the batch,
    which the mask follows.

    ``shown`` and ``time`` change what the network sees in the known frames: by default x0 at time 0. A copy
    of x0 noised a little, at that noise's time, is the "noisy context" of long videos (errors in generated
    context frames matter less when the model is told they are not exact). ``fill`` always puts back x0.

    Frame guidance (``guidance`` w_f > 1; the image guidance of InstructPix2Pix, Brooks et al. 2023, arXiv
    2211.09800, with a mask instead of an image input): out = out_hidden + w_f (out_given - out_hidden), where
    out_hidden is the network told nothing about the known frames, which ``hidden(time)`` returns as x0 noised
    to each sample's network time like the rest of the clip (text-to-video on that clip). Twice the passes.

    A guidance ``ramp`` R > 0 (in frames) lowers the text guidance near the known frames (``text_guidance``), where
    they already say which digit it is: text guidance exaggerates how a digit moves, which lengthens the seam.
    """

    def __init__(self, model, known: torch.Tensor, x0: torch.Tensor, shown: torch.Tensor | None = None,
                 time: float = 0.0, guidance: float = 1.0, hidden=None, ramp: float = 0.0):
        if known.dtype != torch.bool or known.shape != (x0.shape[0], x0.shape[2]):
            raise ValueError(f"known must be a bool mask (B, T) = {(x0.shape[0], x0.shape[2])} for videos "
                             f"{tuple(x0.shape)}, got {known.dtype} {tuple(known.shape)}")
        if guidance != 1.0 and hidden is None:
            raise ValueError(f"frame guidance {guidance} needs hidden: the known frames noised to a given time")
        self.model, self.known, self.x0 = model, known, x0
        self.shown, self.time, self.guidance, self.hidden = x0 if shown is None else shown, time, guidance, hidden
        self.ramp = check_guidance_ramp(ramp)

    def __call__(self, x: torch.Tensor, time: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        copies = len(x) // len(self.x0)  # 2 under classifier-free guidance
        known = self.known.repeat(copies, 1)  # (B', T)
        frames = known[:, None, :, None, None]  # (B', 1, T, 1, 1)
        given = self.model(torch.where(frames, self.shown.repeat(copies, 1, 1, 1, 1), x),
                           time[:, None].expand(known.shape).masked_fill(known, self.time), cond)  # (B', T): 0 = clean
        if self.guidance == 1.0:
            return given
        hidden = self.model(torch.where(frames, self.hidden(time), x), time, cond)  # every frame at the clip's time
        return hidden + self.guidance * (given - hidden)  # out_hidden + w_f (out_given - out_hidden)

    def text_guidance(self, scale: float) -> float | torch.Tensor:
        """The text guidance of each frame, (B, 1, T, 1, 1), for guidance ``scale`` w: with a ramp R > 0,

            w_t = 1 + (w - 1) min(1, d_t / R),    d_t = the frames from frame t to the nearest known frame,

        so it grows from about 1 (the prompt alone, which holds the given motion) beside the known frames to w
        from R frames away (where the prompt must hold the digit). Without a ramp, or with no known frames: w.
        Our own remedy for extension seams (docs/recipe.md), not from a paper.
        """
        if not self.ramp:
            return scale
        t = torch.arange(self.known.shape[1], device=self.known.device, dtype=torch.float)  # (T,)
        apart = (t[:, None] - t[None, :]).abs()  # (T, T): frames between t and t'
        d = apart.masked_fill(~self.known[:, None, :], math.inf).amin(-1)  # (B, T): to the nearest known frame
        w = 1 + (scale - 1) * (d / self.ramp).clamp(max=1)  # (B, T)
        return w[:, None, :, None, None]  # (B, 1, T, 1, 1)

    def fill(self, x: torch.Tensor) -> torch.Tensor:
        """The known frames put back into a finished sample."""
        return torch.where(self.known[:, None, :, None, None], self.x0, x)


# ----------------------------------------------------------------------------- schedules

def linear_betas(num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's schedule: beta_t rises linearly from 1e-4 to 0.02 (for T = 1000, rescaled for other T)."""
    scale = 1000 / num_steps
    return torch.linspace(beta_1 * scale, beta_T * scale, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM (Nichol & Dhariwal 2021): alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2),
    beta_t = 1 - alpha_bar(t) / alpha_bar(t-1), clipped at 0.999 so the last step stays finite."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


# ----------------------------------------------------------------------------- the shared training loss

def clip_error(error: torch.Tensor, generated: torch.Tensor, frame_difference: float = 0.0) -> torch.Tensor:
    """Per clip (B,), the model's error e = output - target (B, C, T, H, W) over its generated frames (B, T):

        mean_t |e_t|^2  +  lambda * mean_t |e_{t+1} - e_t|^2      (the second over pairs of generated frames)

    Plain MSE weighs every temporal frequency w of the error alike; with lambda > 0 frequency w weighs
    1 + 4 lambda sin^2(w / 2): most at w = pi, frames that alternate, which is how a model with temporal
    patches of 2 stutters (short steps inside a patch, long steps across). Our own remedy, not from a paper.
    """
    w = generated[:, None, :, None, None].to(error.dtype)  # (B, 1, T, 1, 1)
    per_frame = error[0, :, 0].numel()  # C * H * W values in one frame
    loss = (error ** 2 * w).flatten(1).sum(1) / (w.flatten(1).sum(1) * per_frame).clamp(min=1)  # (B,)
    if frame_difference:
        pairs = w[:, :, 1:] * w[:, :, :-1]  # (B, 1, T - 1, 1, 1): both frames generated
        step = (error[:, :, 1:] - error[:, :, :-1]) ** 2  # (B, C, T - 1, H, W)
        loss = loss + frame_difference * (step * pairs).flatten(1).sum(1) / \
            (pairs.flatten(1).sum(1) * per_frame).clamp(min=1)
    return loss


class Objective:
    """What both objectives share: the loss and where to guide. Subclasses define ``sample_t``, ``q_sample``,
    ``target_from``, ``time``, and set ``guidance_interval`` and ``guidance_rescale`` (see ``guided``)."""

    guidance_interval: tuple[float, float] = (0.0, 1.0)
    guidance_rescale: float = 0.0

    def guidance_at(self, guidance: float, level: float) -> float:
        """The guidance scale at noise level ``level`` in [0, 1] (1: pure noise): ``guidance`` inside the guidance
        interval [lo, hi], 1 outside it (the conditional prediction alone, one forward pass instead of two).

        Kynkaanniemi et al. 2024 (arXiv 2404.07724) guide only in the middle of the noise levels: guidance at high
        noise narrows the variety, at low noise it does little. For our video DiTs the low end matters: guidance
        near the data exaggerates the difference between the two frames a token draws, so the digit stutters
        (docs/recipe.md); skipping it below lo = 0.7 about halves that.
        """
        lo, hi = self.guidance_interval
        return guidance if lo <= level <= hi else 1.0

    def loss(self, model, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None,
             t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             known: torch.Tensor | None = None, frame_difference: float = 0.0) -> torch.Tensor:
        """L = E_{t, eps} || target - model(x_t, time(t), c) ||^2: DDPM's "simple" loss for the eps target,
        conditional flow matching for the velocity. ``t`` and ``noise`` may be given (data-parallel training
        draws them for the whole batch).

        ``known`` (B, T) marks conditioning frames of videos (B, C, T, H, W): they stay clean with time 0
        (see :class:`KnownFrames`) and the loss is averaged over each clip's other frames, then over clips
        (so a slice of the batch gives a slice of the mean: data-parallel training stays exact).
        ``frame_difference`` lambda adds the frame-difference term (see :func:`clip_error`).
        """
        t = self.sample_t(len(x0), x0.device, generator) if t is None else t
        noise = torch.randn(x0.shape, device=x0.device, generator=generator) if noise is None else noise
        x_t, target = self.q_sample(x0, t, noise), self.target_from(x0, noise, t)
        if known is None and not frame_difference:
            return F.mse_loss(model(x_t, self.time(t), cond), target)
        net = model if known is None else KnownFrames(model, known, x0)
        generated = torch.ones(x0.shape[0], x0.shape[2], dtype=torch.bool, device=x0.device) if known is None \
            else ~known  # (B, T)
        return clip_error(net(x_t, self.time(t), cond) - target, generated, frame_difference).mean()

    def packed_loss(self, model, x0s: list[torch.Tensor], cond: torch.Tensor, t: torch.Tensor,
                    noises: list[torch.Tensor], known: list[torch.Tensor | None], frame_difference: float = 0.0,
                    **packing) -> torch.Tensor:
        """The same loss for clips of different shapes in one packed pass (``DiT.forward_packed``): clip i is x0s[i]
        (C, T_i, H_i, W_i) at time t[i] with noise noises[i] and conditioning frames known[i] (T_i,) (or None).
        Each clip's error is averaged over its own generated frames, then over clips, as in ``loss``."""
        x_in, times, targets = [], [], []
        for x0, ti, noise, k in zip(x0s, t, noises, known):
            x_t = self.q_sample(x0[None], ti[None], noise[None])[0]
            k = torch.zeros(x0.shape[1], dtype=torch.bool, device=x0.device) if k is None else k  # (T_i,)
            x_in.append(torch.where(k[None, :, None, None], x0, x_t))  # known frames clean, with time 0
            times.append(self.time(ti).expand(len(k)).masked_fill(k, 0.0))
            targets.append((self.target_from(x0[None], noise[None], ti[None])[0], ~k))
        per_clip = [clip_error((out - target)[None], generated[None], frame_difference)
                    for out, (target, generated) in zip(model.forward_packed(x_in, times, cond, **packing), targets)]
        return torch.cat(per_clip).mean()


# ----------------------------------------------------------------------------- DDPM / DDIM

class GaussianDiffusion(Objective):
    """DDPM: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t = 0..T-1 (t = 0 is the first noise step).

    ``target`` is what the network predicts: ``"eps"`` (DDPM), ``"x0"``, or ``"v"`` (Salimans & Ho 2022,
    v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0). Every derived quantity is computed once, in float64.
    """

    kind = "ddpm"

    def __init__(self, schedule: str = "linear", num_steps: int = 1000, target: str = "eps",
                 guidance_interval: tuple[float, float] = (0.0, 1.0), guidance_rescale: float = 0.0):
        self.guidance_interval = check_guidance_interval(guidance_interval)
        self.guidance_rescale = check_guidance_rescale(guidance_rescale)
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
        self.schedule, self.num_steps, self.target = schedule, num_steps, target
        self.betas = (linear_betas if schedule == "linear" else cosine_betas)(num_steps)  # beta_t
        self.alphas = 1 - self.betas  # alpha_t = 1 - beta_t
        self.alpha_bars = torch.cumprod(self.alphas, 0)  # alpha_bar_t = prod_{s <= t} alpha_s
        self.alpha_bars_prev = F.pad(self.alpha_bars[:-1], (1, 0), value=1.0)  # alpha_bar_{t-1}, with alpha_bar_{-1} = 1
        # posterior q(x_{t-1} | x_t, x_0) = N(mean_coef_x0 x_0 + mean_coef_xt x_t, posterior_variance)
        self.posterior_variance = self.betas * (1 - self.alpha_bars_prev) / (1 - self.alpha_bars)  # beta~_t
        self.mean_coef_x0 = self.betas * self.alpha_bars_prev.sqrt() / (1 - self.alpha_bars)
        self.mean_coef_xt = (1 - self.alpha_bars_prev) * self.alphas.sqrt() / (1 - self.alpha_bars)

    def __repr__(self) -> str:
        return f"GaussianDiffusion(schedule={self.schedule!r}, num_steps={self.num_steps}, target={self.target!r})"

    def _at(self, values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """values[t] for a batch of steps t (B,), shaped to multiply x, in x's dtype and device."""
        return _broadcast(values.to(x.device)[t].to(x.dtype), x)

    def time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network sees for step t: the step itself, as a float."""
        return t.float()

    def sample_t(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training steps t ~ Uniform{0, ..., T-1}."""
        return torch.randint(0, self.num_steps, (batch,), device=device, generator=generator)

    # q(x_t | x_0) and the targets

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4, reparameterised)."""
        return self._at(self.alpha_bars.sqrt(), t, x0) * x0 + self._at((1 - self.alpha_bars).sqrt(), t, x0) * noise

    def q_mean_var(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean sqrt(alpha_bar_t) x_0 and variance (1 - alpha_bar_t) of q(x_t | x_0)."""
        return self._at(self.alpha_bars.sqrt(), t, x0) * x0, self._at(1 - self.alpha_bars, t, x0).expand_as(x0)

    def target_from(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, target: str | None = None):
        """The regression target for (x_0, eps) at step t: eps, x_0, or v = sqrt(ab) eps - sqrt(1 - ab) x_0."""
        target = target or self.target
        if target == "eps":
            return noise
        if target == "x0":
            return x0
        return self._at(self.alpha_bars.sqrt(), t, x0) * noise - self._at((1 - self.alpha_bars).sqrt(), t, x0) * x0

    def x0_eps_from(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, target: str | None = None):
        """Invert a prediction of any target into (x_0, eps), using x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps."""
        target = target or self.target
        a, s = self._at(self.alpha_bars.sqrt(), t, x_t), self._at((1 - self.alpha_bars).sqrt(), t, x_t)
        if target == "eps":
            return (x_t - s * pred) / a, pred  # x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)
        if target == "x0":
            return pred, (x_t - a * pred) / s  # eps = (x_t - sqrt(ab) x_0) / sqrt(1 - ab)
        return a * x_t - s * pred, s * x_t + a * pred  # x_0 = sqrt(ab) x_t - sqrt(1 - ab) v; eps = sqrt(1 - ab) x_t + sqrt(ab) v

    # reverse process

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_{t-1} | x_t, x_0) = N(mu~, beta~): mu~ = coef_x0 x_0 + coef_xt x_t (DDPM eq. 7)."""
        mean = self._at(self.mean_coef_x0, t, x_t) * x0 + self._at(self.mean_coef_xt, t, x_t) * x_t
        return mean, self._at(self.posterior_variance, t, x_t).expand_as(x_t)

    def predict(self, model, x_t, t, cond, null, guidance, clip: float | None):
        """The guided prediction turned into (x_0, eps); x_0 optionally clipped to [-clip, clip]."""
        x0, eps = self.x0_eps_from(guided(model, x_t, self.time(t), cond, null, guidance, self.guidance_rescale), x_t, t)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x_t - self._at(self.alpha_bars.sqrt(), t, x_t) * x0) / self._at((1 - self.alpha_bars).sqrt(), t, x_t)
        return x0, eps

    def ddpm_step(self, x0, x_t, t, generator=None) -> torch.Tensor:
        """Ancestral step: x_{t-1} = mu~(x_t, x_0) + sqrt(beta~_t) z, with no noise at t = 0."""
        mean, var = self.posterior(x0, x_t, t)
        z = torch.randn(x_t.shape, device=x_t.device, generator=generator)
        return mean + _broadcast((t > 0).to(x_t.dtype), x_t) * var.sqrt() * z

    def ddim_step(self, x0, eps, t, t_prev, eta: float = 0.0, generator=None) -> torch.Tensor:
        """DDIM (Song et al. eq. 12): x_prev = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev). eta = 0 is deterministic;
        eta = 1 with consecutive steps is DDPM's posterior. ``t_prev = -1`` means "to clean data"."""
        ab = self._at(self.alpha_bars, t, x0)
        ab_prev = self._at(F.pad(self.alpha_bars, (0, 1), value=1.0), t_prev, x0)  # index -1 -> alpha_bar = 1
        sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
        z = torch.randn(x0.shape, device=x0.device, generator=generator)
        return ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * z

    def timesteps(self, steps: int | None) -> list[int]:
        """``steps`` evenly spaced steps from T-1 down to 0 (DDIM's "trailing" spacing ends at t = 0)."""
        steps = steps or self.num_steps
        if not 1 <= steps <= self.num_steps:
            raise ValueError(f"steps must be between 1 and {self.num_steps}, got {steps}")
        return torch.linspace(self.num_steps - 1, 0, steps).round().long().tolist()

    @torch.no_grad()
    def sample(self, model, shape: tuple[int, ...], cond: torch.Tensor, null: torch.Tensor | None = None,
               guidance: float = 1.0, steps: int | None = None, sampler: str = "ddpm", eta: float = 0.0,
               clip: float | None = 1.0, generator: torch.Generator | None = None, device="cpu",
               progress: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generate x_0 from x_T ~ N(0, I).

        ``sampler="ddpm"``: all T ancestral steps (``steps`` must be None or T). ``sampler="ddim"``: ``steps``
        evenly spaced steps with stochasticity ``eta``. ``clip`` clamps the predicted x_0 (data lie in [-1, 1]).
        """
        if sampler not in SAMPLERS["ddpm"]:
            raise ValueError(f"unknown sampler {sampler!r} for DDPM; expected one of {SAMPLERS['ddpm']}")
        if sampler == "ddpm" and steps not in (None, self.num_steps):
            raise ValueError(f"the DDPM sampler takes all {self.num_steps} steps, got steps={steps}; use sampler='ddim'")
        _check_sampling(cond, null, shape[0], guidance, steps)
        x = torch.randn(shape, device=device, generator=generator) if noise is None else noise.to(device)
        ts = self.timesteps(steps)
        for i, t_int in enumerate(tqdm(ts, desc=sampler, unit="step", disable=not progress, leave=False)):
            t = torch.full((shape[0],), t_int, device=device, dtype=torch.long)
            x0, eps = self.predict(model, x, t, cond, null, self.guidance_at(guidance, t_int / self.num_steps), clip)
            if sampler == "ddpm":
                x = self.ddpm_step(x0, x, t, generator)
            else:
                t_prev = torch.full_like(t, ts[i + 1] if i + 1 < len(ts) else -1)
                x = self.ddim_step(x0, eps, t, t_prev, eta, generator)
        return x


# ----------------------------------------------------------------------------- rectified flow

class RectifiedFlow(Objective):
    """Rectified flow: x_t = (1 - t) x_0 + t eps for t in [0, 1] (t = 1 is pure noise).

    The network predicts the velocity v = dx_t/dt = eps - x_0; sampling integrates dx/dt = v from
    t = 1 to t = 0 with Euler steps. Training times are logit-normal, t = sigmoid(n), n ~ N(m, s^2)
    (SD3, Esser et al. 2024), which spends more of the training on the hard middle of the path.

    ``shift`` moves both the training times and the sampling grid towards noise,
    t -> shift t / (1 + (shift - 1) t) (SD3's resolution shift): data with much redundancy (large,
    mostly black video latents) keeps its layout visible until t is close to 1, so the model must
    practise there and the sampler must take small steps there.
    """

    kind = "flow"
    target = "v"

    def __init__(self, logit_mean: float = 0.0, logit_std: float = 1.0, timestep_sampling: str = "logit_normal",
                 shift: float = 1.0, guidance_interval: tuple[float, float] = (0.0, 1.0),
                 guidance_rescale: float = 0.0):
        self.guidance_interval = check_guidance_interval(guidance_interval)
        self.guidance_rescale = check_guidance_rescale(guidance_rescale)
        if timestep_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"unknown timestep_sampling {timestep_sampling!r}; expected 'logit_normal' or 'uniform'")
        if shift <= 0:
            raise ValueError(f"shift must be positive, got {shift}")
        self.logit_mean, self.logit_std, self.timestep_sampling = logit_mean, logit_std, timestep_sampling
        self.shift = shift

    def __repr__(self) -> str:
        return f"RectifiedFlow(timestep_sampling={self.timestep_sampling!r}, shift={self.shift})"

    def shifted(self, t: torch.Tensor) -> torch.Tensor:
        """t -> shift t / (1 + (shift - 1) t): the identity for shift = 1; keeps 0 and 1 fixed."""
        return self.shift * t / (1 + (self.shift - 1) * t)

    def time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network sees for t in [0, 1]: 1000 t, the DDPM range."""
        return t * TIME_SCALE

    def sample_t(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """t = sigmoid(n), n ~ N(m, s^2) (logit-normal), or t ~ U(0, 1)."""
        if self.timestep_sampling == "uniform":
            return self.shifted(torch.rand(batch, device=device, generator=generator))
        n = torch.randn(batch, device=device, generator=generator)
        return self.shifted(torch.sigmoid(self.logit_mean + self.logit_std * n))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - t) x_0 + t eps: a straight line from data to noise."""
        t = _broadcast(t, x0)
        return (1 - t) * x0 + t * noise

    def target_from(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """v = d x_t / dt = eps - x_0, the same at every t."""
        return noise - x0

    def timesteps(self, steps: int) -> torch.Tensor:
        """steps + 1 times from 1 (noise) to 0 (data), evenly spaced before the shift."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        return self.shifted(torch.linspace(1.0, 0.0, steps + 1))

    @torch.no_grad()
    def sample(self, model, shape: tuple[int, ...], cond: torch.Tensor, null: torch.Tensor | None = None,
               guidance: float = 1.0, steps: int | None = 50, sampler: str = "euler", eta: float = 0.0,
               clip: float | None = None, generator: torch.Generator | None = None, device="cpu",
               progress: bool = False, noise: torch.Tensor | None = None, start: float = 1.0) -> torch.Tensor:
        """Euler: x_{t - dt} = x_t - dt v(x_t, t). ``eta`` and ``clip`` are accepted for a shared interface
        (eta must be 0: this sampler is deterministic; clip clamps the final sample).

        ``start`` < 1 begins at that time instead of pure noise (SDEdit): ``noise`` is then x_start, a clip
        noised to time ``start``, and only the grid's times below ``start`` are taken (a share of the steps)."""
        if sampler not in SAMPLERS["flow"]:
            raise ValueError(f"unknown sampler {sampler!r} for rectified flow; expected one of {SAMPLERS['flow']}")
        if eta != 0:
            raise ValueError(f"the Euler sampler is deterministic: eta must be 0, got {eta}")
        if not 0 < start <= 1 or (start < 1 and noise is None):
            raise ValueError(f"start must be in (0, 1], and below 1 needs noise = x_start; got start={start}, "
                             f"noise {'given' if noise is not None else 'None'}")
        _check_sampling(cond, null, shape[0], guidance, steps)
        x = torch.randn(shape, device=device, generator=generator) if noise is None else noise.to(device)
        ts = self.timesteps(50 if steps is None else steps)
        ts = torch.cat([torch.tensor([start]), ts[ts < start]]).to(device)  # start = 1: the whole grid
        for t, t_next in tqdm(list(zip(ts[:-1], ts[1:])), desc="euler", unit="step", disable=not progress, leave=False):
            v = guided(model, x, self.time(t.expand(shape[0])), cond, null, self.guidance_at(guidance, float(t)),
                       self.guidance_rescale)
            x = x + (t_next - t) * v  # x_{t - dt} = x_t - dt v
        return x if clip is None else x.clamp(-clip, clip)


def make_objective(name: str = "ddpm", **kwargs) -> GaussianDiffusion | RectifiedFlow:
    """``"ddpm"`` -> :class:`GaussianDiffusion`, ``"flow"`` -> :class:`RectifiedFlow`."""
    objectives = {"ddpm": GaussianDiffusion, "flow": RectifiedFlow}
    if name not in objectives:
        raise ValueError(f"unknown objective {name!r}; expected one of {sorted(objectives)}")
    return objectives[name](**kwargs)


# ----------------------------------------------------------------------------- the network's side

class TimestepEmbedding(nn.Module):
    """time (B,) -> (B, dim): sin-cos features of the time (as for token positions), then an MLP (as in DiT)."""

    def __init__(self, dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        return self.mlp(sincos_1d(time, self.frequency_dim))  # (B, dim)
