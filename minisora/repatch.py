"""Re-patching a trained DiT to a shorter temporal patch: one token per latent frame instead of per two.

A DiT with tubelets of pt = 2 latent frames draws both frames of a tubelet from one token, and it stutters: it
moves the digit too little inside a token and catches up across tokens (docs/recipe.md, "Why the digit
stutters"). A temporal patch of 1 has no inside of a token. Training it from scratch would throw away what the
pt = 2 model learned, so its weights are carried over, as ViT fine-tuning at a higher resolution keeps the weights
and interpolates the positions (Dosovitskiy et al. 2021, section 3.2) and FlexiViT resizes the patch embedding to
a new patch size (Beyer et al. 2023, arXiv 2212.08013):

- **embedding**: W'_t = sum_tau W_tau (the kernel summed over its pt time slices), so a new token of one frame x
  gets the embedding the old model gave a tubelet holding x still: sum_tau W_tau x + b;
- **output**: each value of a frame is the mean of the pt rows that drew it in the old tubelet;
- **positions**: the rotary time coordinate of a token is scaled by pt' / pt (``DiTConfig.rope_time_scale``), so
  two tokens one frame apart are as far apart in angle as before;
- everything else (blocks, text, time) as it was. The local 3x3x3 convolution now reaches one latent frame, not
  two, either side: training adapts it.

The new model has twice the tokens, so a training step and a sampling step cost about twice as much. Our own
procedure for the stutter; the carried weights are a start, not an equivalent model. Measured (docs/recipe.md,
"Two remedies for the stutter"): it removes the stutter in pairs, but at equal compute it reads digits worse
than the patch of 2.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from einops import reduce

from .dit import DiT, DiTConfig


def repatched_config(start: DiTConfig, patch: tuple[int, int, int]) -> DiTConfig:
    """``start`` with the temporal patch ``patch[0]``, which must divide ``start``'s, and its time scaled to match."""
    (pt, ph, pw), (new_pt, new_ph, new_pw) = start.patch, patch
    if (new_ph, new_pw) != (ph, pw) or new_pt < 1 or pt % new_pt or new_pt == pt:
        raise ValueError(f"re-patching shortens the temporal patch only, to a divisor of the old one: from "
                         f"{start.patch} to {tuple(patch)} is not that")
    if not start.rope:
        raise ValueError("re-patching needs a DiT with rotary positions (rope=True), whose time can be rescaled")
    return replace(start, patch=tuple(patch), rope_time_scale=start.rope_time_scale * new_pt / pt)


@torch.no_grad()
def repatch(start: DiT, model: DiT) -> None:
    """Load ``start``'s weights into ``model``, the same DiT with a shorter temporal patch (see the module's text)."""
    expected = repatched_config(start.config, model.config.patch)
    if replace(model.config, attention=expected.attention, vae=expected.vae) != expected:  # any attention mode
        raise ValueError(f"can only re-patch into {expected} (in any attention mode), got {model.config}")
    k = start.config.patch[0] // model.config.patch[0]  # old frames per new token
    state = start.state_dict()
    state["embed.proj.weight"] = reduce(state["embed.proj.weight"], "d c (pt k) ph pw -> d c pt ph pw", "sum",
                                        k=k)  # (D, C, pt', ph, pw): W' = sum_tau W_tau
    ph, pw = model.config.patch[1:]
    for name in ("final.linear.weight", "final.linear.bias"):  # rows ordered (c pt ph pw), as unpatchify reads them
        state[name] = reduce(state[name], "(c pt k s) ... -> (c pt s) ...", "mean", k=k, s=ph * pw,
                             c=model.config.in_channels)  # (C*pt'*ph*pw, [D]): the mean of the k rows of a value
    model.load_state_dict(state)
