"""DiamondGAN test helpers: generators with trained-like norm parameters and their float64 twins."""

from __future__ import annotations

import torch

from neuroshift.synthesis.diamondgan import DiamondGenerator


def trained_like(out_channels: int = 1, seed: int = 0, base: int = 16, n_blocks: int = 2,
                 encoding: str = "patterns", **options: str) -> DiamondGenerator:
    """An eval-mode generator whose norm scales (U[0.5, 1.5]) and offsets (N(0, 0.5)) are spread like a trained
    one's (init values, scale 1 and offset 0, make a constant-encoded domain stream degenerate). ``options``:
    ``residual_padding`` / ``resample_padding`` (default: the released ones)."""
    torch.manual_seed(seed)
    g = DiamondGenerator(3, out_channels, n_blocks=n_blocks, base=base, domain_encoding=encoding, **options).eval()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.5)
    return g


def float64_twin(g: DiamondGenerator) -> DiamondGenerator:
    """The same generator (weights, encoding, padding options) in float64, eval mode."""
    twin = DiamondGenerator(**g.architecture()).double().eval()
    twin.load_state_dict(g.state_dict())
    return twin
