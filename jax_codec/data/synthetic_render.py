"""Procedural music, rendering: how a synthetic song sounds.

`render(song, start, seconds, sr, channels, rng)` synthesizes every note and drum hit of
`synthetic_compose.bar_events` that sounds in a window: band-limited wavetables (additive
spectra), subtractive saw/square/pulse voices through a resonant low-pass with a filter envelope,
FM voices, Karplus-Strong strings, ADSR envelopes, vibrato and detuned unison; a kick with a pitch
sweep, a snare of tone and noise, hats, toms and a crash. Tracks are mixed on buses with
constant-power panning over any number of channels and a noise-tail reverb send. `master` adds the
tanh bus saturation and scales to the song's loudness. Everything is vectorized NumPy (no
per-sample Python loops).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from jax_codec.data.synthetic_compose import Instrument, Song, bar_events

_TABLE_SIZE = 2048  # wavetable length (power of two: the index wraps with a bit mask)
_BLOCK = 1024  # phases restart from float64 anchors every block to keep float32 precision


class _Renderer:
    """Per-render scratch: sample rate, noise buffers and wavetable caches."""

    def __init__(self, sr: int, n: int, rng: np.random.Generator):
        self.sr = sr
        # Drums and strings read random slices; the margin keeps slices of short windows random.
        self.noise = rng.random(n + 4096, dtype=np.float32) * 2.0 - 1.0
        # Hats: a double difference (+12 dB/octave) leaves bright, sizzly noise.
        self.hat_noise = np.zeros_like(self.noise)
        self.hat_noise[2:] = 0.5 * (self.noise[2:] - 2 * self.noise[1:-1] + self.noise[:-2])
        self.ramp = np.arange(_BLOCK, dtype=np.float32)
        self.tables: dict = {}

    def time(self, n0: int, n1: int) -> np.ndarray:
        return np.arange(n0, n1, dtype=np.float32) * np.float32(1.0 / self.sr)

    def phase(self, f: float, n0: int, n1: int) -> np.ndarray:
        """Phase in cycles of a sine at `f` Hz for note samples [n0, n1), float32."""
        inc = f / self.sr
        m = n1 - n0
        k = -(-m // _BLOCK)
        anchors = ((n0 + _BLOCK * np.arange(k)) * inc) % 1.0  # exact in float64
        ph = anchors.astype(np.float32)[:, None] + self.ramp * np.float32(inc)
        return ph.reshape(-1)[:m]

    def noise_slice(self, u: float, m: int, bright: bool = False) -> np.ndarray:
        src = self.hat_noise if bright else self.noise
        o = int(u * (len(src) - m))
        return src[o : o + m]

    def table(self, key, amps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cached one-cycle wavetable with harmonic amplitudes `amps`, and its forward difference."""
        if key not in self.tables:
            spec = np.zeros(_TABLE_SIZE // 2 + 1, np.complex64)
            spec[1 : len(amps) + 1] = amps
            tab = np.fft.irfft(spec, _TABLE_SIZE).astype(np.float32)
            tab /= np.abs(tab).max() + 1e-9
            self.tables[key] = (tab, np.roll(tab, -1) - tab)
        return self.tables[key]


def _lookup(tab: tuple[np.ndarray, np.ndarray], ph: np.ndarray) -> np.ndarray:
    """Linearly interpolated wavetable read at phase `ph` (cycles, any real value)."""
    x = ph * np.float32(_TABLE_SIZE)
    xi = np.floor(x)
    x -= xi  # fractional position between table entries
    i = xi.astype(np.intp)
    i &= _TABLE_SIZE - 1
    values, slopes = tab
    y = slopes.take(i)
    y *= x
    y += values.take(i)
    return y


def _envelope(inst: Instrument, t: np.ndarray, dur: float) -> np.ndarray:
    """ADSR (or attack + exponential decay) with a linear release after note-off at `dur`."""
    attack = t * np.float32(1.0 / inst.attack)
    if inst.perc > 0:
        env = np.minimum(attack, 1.0) * np.exp(t * np.float32(-1.0 / inst.perc))
    else:
        decay = np.clip((t - inst.attack) * (1.0 / inst.decay), 0.0, 1.0)
        env = np.minimum(attack, 1.0 - (1.0 - inst.sustain) * decay)
    return env * np.clip((dur + inst.release - t) * np.float32(1.0 / inst.release), 0.0, 1.0)


def _sub_amps(inst: Instrument, f0: float, cutoff: float, n: int) -> np.ndarray:
    """Harmonics of a saw/square/pulse through a resonant 4-pole low-pass at `cutoff` Hz."""
    h = np.arange(1, n + 1, dtype=np.float32)
    if inst.wave == "saw":
        amps = 1.0 / h
    elif inst.wave == "square":
        amps = (h % 2) / h
    else:
        amps = np.abs(np.sin(np.pi * h * inst.width)) / h
    r = h * (f0 / cutoff)
    lowpass = 1.0 / np.sqrt((1.0 - r * r) ** 2 + (r / inst.q) ** 2)
    return amps * lowpass * lowpass


def _pluck(inst: Instrument, f0: float, m: int, r: _Renderer, u: float) -> np.ndarray:
    """Karplus-Strong string, `m` samples from the pluck.

    The string's output is periodic with each harmonic decaying at its own rate, so each period
    is one inverse FFT of the decayed spectrum; all periods come from one batched irfft. The
    period is rounded up to whole samples and the result read back faster to get the exact pitch.
    """
    import scipy.fft  # lazy: only rendering needs it

    sr = r.sr
    p = sr / f0
    period = max(2, math.ceil(p))
    nb = period // 2 + 1
    speed = period / p
    n_periods = int(m * speed) // period + 2
    freqs = np.arange(nb, dtype=np.float32) * np.float32(sr / period)
    rate = (6.91 / inst.t60) * (1.0 + (freqs / inst.bright) ** 2)  # 1/s, higher harmonics faster
    decay = np.exp(np.arange(n_periods, dtype=np.float32)[:, None] * (-rate * (period / sr)))
    noise = r.noise_slice(u, 2 * nb)
    pick = np.abs(np.sin(np.pi * np.arange(nb) * (0.1 + 0.3 * u)))  # plucking-position comb
    harmonic = np.arange(nb, dtype=np.float32)
    harmonic[0] = np.inf  # no DC
    # A noise burst, darker for a soft pluck; white noise would put a low note's energy far
    # above its fundamental.
    excite = (noise[:nb] + 1j * noise[nb:]) * pick * harmonic**-inst.tilt
    y = scipy.fft.irfft(decay * excite.astype(np.complex64), period, axis=1).reshape(-1)
    y /= np.abs(y[:period]).max() + 1e-9
    pos = np.arange(m, dtype=np.float32) * np.float32(speed)
    i = pos.astype(np.int32)
    return y[i] + (pos - i) * (y[i + 1] - y[i])


def _note(
    inst: Instrument, f0: float, dur: float, vel: float, n0: int, n1: int, r: _Renderer, u: float
):
    """Samples [n0, n1) (counted from note-on) of one note."""
    sr = r.sr
    t = r.time(n0, n1)
    if inst.kind == "pluck":  # a recursion from the pluck: render from the start, then crop
        y = _pluck(inst, f0, n1, r, u)[n0:]
    else:
        spread = 1.0 + inst.vib_depth + inst.detune
        # Band-limit (no aliasing); beyond a quarter of the table, linear interpolation blurs.
        nyq_harm = max(1, min(int(0.45 * sr / (f0 * spread)), _TABLE_SIZE // 4))
        if inst.kind == "fm":
            ratio = inst.ratio
            max_index = max(0.0, (0.45 * sr - f0) / (f0 * ratio) - 1.0)  # Carson bandwidth
            index = np.float32(min(inst.index, max_index))
            index_sus = np.float32(min(inst.index_sus, max_index))
            ienv = index_sus + (index - index_sus) * np.exp(t * np.float32(-1.0 / inst.fenv))
            two_pi = np.float32(2 * np.pi)
            mod = np.sin(two_pi * r.phase(f0 * ratio, n0, n1)) * ienv
            y = np.sin(two_pi * r.phase(f0, n0, n1) + mod)
        else:
            ph = r.phase(f0, n0, n1)
            if inst.vib_depth:  # vibrato fades in over 0.3 s
                w = np.float32(2 * np.pi * inst.vib_rate)
                amount = np.float32(inst.vib_depth * f0 / (2 * np.pi * inst.vib_rate))
                ph += amount * (1.0 - np.cos(w * t)) * np.minimum(t * np.float32(3.0), 1.0)
            if inst.kind == "table":
                n = min(nyq_harm, len(inst.amps))
                tab = r.table((id(inst), n), inst.amps[:n])
                y = _lookup(tab, ph)
                if inst.detune:
                    y += _lookup(tab, r.phase(f0 * (1 + inst.detune), n0, n1))
            else:
                pitch = round(f0, 1)
                dark = r.table((id(inst), pitch, 0), _sub_amps(inst, f0, inst.cutoff, nyq_harm))
                y = _lookup(dark, ph)
                if inst.cutoff_env:  # filter envelope: crossfade from a brighter table
                    cut = inst.cutoff + inst.cutoff_env
                    bright = r.table((id(inst), pitch, 1), _sub_amps(inst, f0, cut, nyq_harm))
                    fenv = np.exp(t * np.float32(-1.0 / inst.fenv))
                    y += (_lookup(bright, ph) - y) * fenv
                if inst.detune:
                    y += _lookup(dark, r.phase(f0 * (1 + inst.detune), n0, n1))
    return y * _envelope(inst, t, dur) * np.float32(vel)


def _drum(kind: str, kit: dict, n0: int, n1: int, r: _Renderer, u: float) -> np.ndarray:
    """Samples [n0, n1) of one drum hit; `u` in [0, 1) varies noise (and tom pitch)."""
    t = r.time(n0, n1)
    m = n1 - n0
    two_pi = np.float32(2 * np.pi)
    if kind in ("kick", "tom"):
        f_hi, f_lo = kit["kick_f"]
        tau_p, tau_a = kit["kick_tau"]
        if kind == "tom":
            f_lo = kit["tom_f"] * (1.0 + u)
            f_hi, tau_a = f_lo * 1.6, 0.25
        # Exponential pitch sweep f_lo + (f_hi - f_lo) exp(-t / tau_p), integrated in closed form.
        ph = f_lo * t + (f_hi - f_lo) * tau_p * (1.0 - np.exp(t * np.float32(-1.0 / tau_p)))
        y = np.sin(two_pi * ph) * np.exp(t * np.float32(-1.0 / tau_a))
        if kind == "kick" and kit["kick_click"]:
            y += kit["kick_click"] * r.noise_slice(u, m) * np.exp(t * np.float32(-1.0 / 0.004))
        return y
    if kind == "snare":
        tau_t, tau_n = kit["snare_tau"]
        f = kit["snare_f"]
        tone = (np.sin(two_pi * f * t) + 0.5 * np.sin(two_pi * 1.7 * f * t)) * np.exp(
            t * np.float32(-1.0 / tau_t)
        )
        b = kit["snare_bright"]
        noise = (1 - b) * r.noise_slice(u, m) + 2 * b * r.noise_slice(u, m, bright=True)
        mix = kit["snare_tone"]
        return mix * tone + (1 - mix) * noise * np.exp(t * np.float32(-1.0 / tau_n))
    tau = {"hat": kit["hat_tau"][0], "ohat": kit["hat_tau"][1], "crash": kit["crash_tau"]}[kind]
    return r.noise_slice(u, m, bright=True) * np.exp(t * np.float32(-1.0 / tau))


_DRUM_LENGTH = {"kick": 1.2, "tom": 1.0, "snare": 0.6, "hat": 0.25, "ohat": 1.5, "crash": 5.0}


def render(song: Song, start: float, seconds: float, sr: int, channels: int, rng) -> np.ndarray:
    """Renders [start, start + seconds) of `song` as float32 [channels, T], before loudness."""
    n = int(round(seconds * sr))
    r = _Renderer(sr, n, rng)
    first = max(0, bisect.bisect_right(song.bar_times, start) - 2)  # notes still ringing
    last = min(len(song.bar_times) - 2, bisect.bisect_right(song.bar_times, start + seconds))
    events = [e for b in range(first, last + 1) for e in bar_events(song, b)]

    insts = {"lead": song.lead, "bass": song.bass, "chords": song.chords}
    buses = {name: np.zeros(n, np.float32) for name in insts}
    chord_pans = (song.chords.pan, song.chords.pan)
    if channels > 1:  # alternate chord voices / arpeggio notes left and right for width
        buses["chords_b"] = np.zeros(n, np.float32)
        chord_pans = (0.2 + 0.2 * song.chords.pan, 0.8 - 0.2 * song.chords.pan)
    kit = song.kit
    drum_buses = ("kick", "snare", "hat")
    if kit is not None:
        buses.update({name: np.zeros(n, np.float32) for name in drum_buses})
    for k, (name, onset, dur, value, vel) in enumerate(events):
        s = int(round((onset - start) * sr))
        if name in insts:
            inst = insts[name]
            length = int((dur + inst.release) * sr) + 1
            bus = "chords_b" if name == "chords" and "chords_b" in buses and k % 2 else name
        else:
            length = int(_DRUM_LENGTH[name] * sr)
            bus = {"tom": "kick", "ohat": "hat", "crash": "hat"}.get(name, name)
        a, b = max(0, -s), min(length, n - s)
        if b <= a:
            continue
        if name in insts:
            f0 = 440.0 * 2.0 ** ((value - 69) / 12.0)
            y = _note(inst, f0, dur, vel, a, b, r, (k * 0.618034) % 1.0)
        else:
            y = _drum(name, kit, a, b, r, value) * np.float32(vel)
        buses[bus][s + a : s + b] += y

    # Mix: constant-power panning across `channels` evenly spaced positions, and a reverb send.
    levels = {"lead": song.lead.level, "bass": song.bass.level, "chords": song.chords.level}
    levels["chords_b"] = levels["chords"]
    pans = {"lead": song.lead.pan, "bass": 0.5, "chords": chord_pans[0], "chords_b": chord_pans[1]}
    sends = {"lead": song.lead.send, "bass": song.bass.send, "chords": song.chords.send}
    sends["chords_b"] = sends["chords"]
    if kit is not None:
        for i, name in enumerate(drum_buses):
            levels[name], pans[name], sends[name] = kit["levels"][i], kit["pans"][i], kit["send"]
    out = np.zeros((channels, n), np.float32)
    send = np.zeros(n, np.float32)
    for name, buf in buses.items():
        buf *= np.float32(levels[name])
        for c, g in enumerate(_pan_gains(pans[name], channels)):
            if g:
                out[c] += g * buf
        send += sends[name] * buf
    rt60, wet = song.reverb
    if wet:
        out += wet * _reverb(send, rt60, channels, r)
    return out


def _pan_gains(pan: float, channels: int) -> list[float]:
    if channels == 1:
        return [1.0]
    x = pan * (channels - 1)
    lo = min(int(x), channels - 2)
    frac = x - lo
    gains = [0.0] * channels
    gains[lo], gains[lo + 1] = math.sqrt(1 - frac), math.sqrt(frac)
    return gains


def _reverb(x: np.ndarray, rt60: float, channels: int, r: _Renderer) -> np.ndarray:
    """Convolution with decaying noise tails (one per channel, so stereo is decorrelated)."""
    import scipy.fft

    sr, n = r.sr, len(x)
    m = min(int(min(rt60, 1.0) * sr), len(r.noise) // 2)
    t = r.time(0, m)
    # Damping: the tail loses highs, so low-pass the impulse response spectrum.
    nfft = scipy.fft.next_fast_len(n + m, real=True)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr).astype(np.float32)
    damp = 1.0 / (1.0 + (freqs / 4000.0) ** 2)
    x_spec = scipy.fft.rfft(x, nfft)
    env = np.exp(t * np.float32(-6.91 / rt60))
    out = np.empty((channels, n), np.float32)
    for c in range(channels):
        ir = r.noise_slice((0.37 * c + 0.11) % 1.0, m) * env
        ir *= np.float32(1.0 / (np.sqrt(np.dot(ir, ir)) + 1e-9))  # unit energy
        out[c] = scipy.fft.irfft(x_spec * scipy.fft.rfft(ir, nfft) * damp, nfft)[:n]
    return out


def master(out: np.ndarray, song: Song) -> np.ndarray:
    """Gentle tanh bus saturation, then the song's loudness with the peak kept at or below 0.9."""
    peak = np.abs(out).max()
    if peak < 1e-6:
        return out
    d = song.drive
    out = np.tanh(out * np.float32(d / peak)) * np.float32(1.0 / d)
    rms = math.sqrt(float(np.mean(np.square(out))))
    gain = min(10.0 ** (song.loudness_db / 20.0) / rms, 0.9 / np.abs(out).max())
    return out * np.float32(gain)
