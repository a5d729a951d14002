"""The signal-processing design of a StyleGAN3 synthesis network, as data.

Every layer's numbers follow from a handful of named choices (``SynthesisDesign``): cutoffs f_c
and minimum stop-bands f_t grow geometrically from the first layer to the last non-critical one,

    f_c[i] = f_c,0 · (f_c,N / f_c,0)^e_i,   f_t[i] = f_t,0 · (f_t,N / f_t,0)^e_i,
    e_i = min(i / (N − N_crit), 1),  f_c,N = size / 2,  f_t,N = f_c,N · 2^0.3,

sampling rates are s[i] = 2^⌈log2 min(2·f_t[i], size)⌉, transition half-widths
f_h[i] = max(f_t[i], s[i]/2) − f_c[i], feature maps carry a margin of 10 px (except the last two
layers, exactly ``size``), channels are min(channel_base / (2·f_c[i]), channel_max). The resampling
filters are Kaiser-windowed low-passes designed from those numbers (``lowpass_filter``), never stored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

LRELU_UPSAMPLING = 2  # the leaky ReLU runs at twice the higher of the input and output rates
FILTER_SIZE = 6  # taps per resampling factor


@dataclass(frozen=True)
class LayerDesign:
    """One synthesis layer: sizes, rates, cutoffs, resampling factors, filter taps and padding."""

    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_rate: int
    out_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    critically_sampled: bool
    conv_kernel: int
    radial: bool

    @property
    def tmp_rate(self) -> int:
        """Rate of the leaky ReLU: max(in, out) · 2 (ToRGB: no up-sampling)."""
        return max(self.in_rate, self.out_rate) * (1 if self.is_torgb else LRELU_UPSAMPLING)

    @property
    def up(self) -> int:
        return self.tmp_rate // self.in_rate

    @property
    def down(self) -> int:
        return self.tmp_rate // self.out_rate

    @property
    def up_taps(self) -> int:
        return FILTER_SIZE * self.up if self.up > 1 and not self.is_torgb else 1

    @property
    def down_taps(self) -> int:
        return FILTER_SIZE * self.down if self.down > 1 and not self.is_torgb else 1

    @property
    def padding(self) -> tuple[int, int]:
        """(before, after) on both axes so that up-sampling, filtering and down-sampling of the
        (in_size + k − 1)² conv output give out_size² samples, centred as in NVIDIA's
        symmetric interpretation (the lower pad gets the extra ``up`` // 2)."""
        total = (self.out_size - 1) * self.down + 1
        total -= (self.in_size + self.conv_kernel - 1) * self.up
        total += self.up_taps + self.down_taps - 2
        lo = (total + self.up) // 2
        return lo, total - lo

    def up_filter(self) -> torch.Tensor | None:
        """Separable (1-D) up-sampling low-pass at the input cutoff, or None (identity)."""
        return lowpass_filter(self.up_taps, self.in_cutoff, 2 * self.in_half_width, self.tmp_rate)

    def down_filter(self) -> torch.Tensor | None:
        """Down-sampling low-pass at the output cutoff: separable (1-D), or radial (2-D) for R
        configs' non-critically-sampled layers; None for the identity."""
        return lowpass_filter(self.down_taps, self.out_cutoff, 2 * self.out_half_width, self.tmp_rate,
                              radial=self.radial and not self.critically_sampled)


@dataclass(frozen=True)
class SynthesisDesign:
    """The named choices that fix a StyleGAN3 synthesis network (``StyleGAN3Arch.design`` fills them
    from an architecture, whose fields hold NVIDIA's defaults)."""

    size: int
    channel_base: int
    channel_max: int
    num_layers: int
    num_critical: int
    first_cutoff: float
    first_stopband: float
    last_stopband_rel: float
    margin_size: int
    conv_kernel: int
    radial: bool
    img_channels: int = 3

    def schedule(self) -> dict[str, np.ndarray]:
        """Per-layer cutoffs, stop-bands, sampling rates, half-widths, sizes and channels (float64)."""
        last_cutoff = self.size / 2
        last_stopband = last_cutoff * self.last_stopband_rel
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.size))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + self.margin_size * 2
        sizes[-2:] = self.size
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        return {"cutoffs": cutoffs, "rates": rates, "half_widths": half_widths, "sizes": sizes,
                "channels": channels}

    def layers(self) -> list[LayerDesign]:
        """The ``num_layers`` modulated conv layers and the final ToRGB, in synthesis order."""
        s = self.schedule()
        out = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == self.num_layers
            out.append(LayerDesign(
                in_channels=int(s["channels"][prev]), out_channels=int(s["channels"][idx]),
                in_size=int(s["sizes"][prev]), out_size=int(s["sizes"][idx]),
                in_rate=int(s["rates"][prev]), out_rate=int(s["rates"][idx]),
                in_cutoff=float(s["cutoffs"][prev]), out_cutoff=float(s["cutoffs"][idx]),
                in_half_width=float(s["half_widths"][prev]), out_half_width=float(s["half_widths"][idx]),
                is_torgb=is_torgb, critically_sampled=idx >= self.num_layers - self.num_critical,
                conv_kernel=1 if is_torgb else self.conv_kernel, radial=self.radial))
        return out

    def input_spec(self) -> tuple[int, int, float, float]:
        """Fourier-feature input: (channels, size, sampling rate, bandwidth)."""
        s = self.schedule()
        return int(s["channels"][0]), int(s["sizes"][0]), float(s["rates"][0]), float(s["cutoffs"][0])


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's empirical β for a stop-band attenuation in dB."""
    a = attenuation_db
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


def kaiser_attenuation(numtaps: int, width_rel: float) -> float:
    """Attenuation (dB) a Kaiser window of ``numtaps`` reaches for a transition width given
    relative to Nyquist: 2.285·(N − 1)·π·Δ + 7.95."""
    return 2.285 * (numtaps - 1) * math.pi * width_rel + 7.95


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
                   ) -> torch.Tensor | None:
    """Kaiser-windowed low-pass with cutoff and transition ``width`` in Hz at rate ``fs``.

    Separable: h[n] = c·sinc(c·m_n)·kaiser[n], m_n = n − (N−1)/2, c = cutoff / (fs/2), normalised
    to unit DC gain (the window method of ``scipy.signal.firwin``). Radial (2-D, jinc):
    h(r) = J1(2π f_c r) / (π r) · kaiser(x)·kaiser(y), r in samples / fs, normalised to sum 1.
    ``numtaps`` 1 → None (identity).
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be ≥ 1, got {numtaps}")
    if numtaps == 1:
        return None
    nyquist = fs / 2
    window = np.kaiser(numtaps, kaiser_beta(kaiser_attenuation(numtaps, width / nyquist)))
    if not radial:
        c = cutoff / nyquist
        m = np.arange(numtaps) - (numtaps - 1) / 2
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64)
    f = torch.special.bessel_j1(2 * cutoff * math.pi * r) / (math.pi * r)
    f = f * torch.as_tensor(np.outer(window, window))
    return (f / f.sum()).to(torch.float32)
