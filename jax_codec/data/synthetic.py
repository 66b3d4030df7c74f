"""Procedural music: the embedded default training data.

`SyntheticMusic` is a grain random-access source whose item `i` is a short excerpt of a "song"
composed from `(seed, i)`, so `python -m jax_codec.train` runs on a fresh machine with no data.
Each song draws:

- a meter (4/4 or 3/4), a tempo of 60-180 bpm and a key and mode (major, minor, the church modes,
  harmonic minor); sections of 4 or 8 bars may change tempo or modulate;
- a diatonic chord progression (triads or sevenths, one or two chords a bar) played as a pad,
  an arpeggio or rhythmic stabs;
- a melody (scale steps and leaps, chord tones on the beat, rests, varied note lengths) whose
  phrases repeat within a section, and a bass line on the chord roots;
- drums: a kick with a pitch sweep, a snare of noise and tone, closed and open hats, toms and a
  crash, with per-section patterns, ghost notes, swing and fills;
- timbres: band-limited wavetables (additive spectra), subtractive saw/square/pulse voices with a
  resonant low-pass and filter envelope, FM (keys, bells, basses), and plucked strings
  (Karplus-Strong), with ADSR envelopes, vibrato, detuned unison and random mix levels, panning
  and a noise-tail reverb.

Everything is vectorized NumPy (no per-sample Python loops). Mixes are scaled to a random
loudness (RMS of about -24 to -10 dBFS) with the peak kept at or below 0.9, so nothing clips.

The song is drawn in `synthetic_compose` (structure, notes, timbre parameters) and synthesized in
`synthetic_render` (oscillators, drums, mixing, mastering); this module is the public API.
"""

from __future__ import annotations

import numpy as np

from jax_codec.data.synthetic_compose import plan_song
from jax_codec.data.synthetic_render import master, render

_PRE_ROLL = 0.25  # seconds rendered before an excerpt so reverb and notes are already sounding


def render_song(
    seconds: float, seed: int, sample_rate: int = 44100, channels: int = 1
) -> np.ndarray:
    """A whole song from its start: float32 [T] (mono) or [T, channels]."""
    song = plan_song(int(np.random.default_rng([seed, 1]).integers(2**62)), seconds)
    out = master(
        render(song, 0.0, seconds, sample_rate, channels, np.random.default_rng([seed, 2])), song
    )
    return out[0] if channels == 1 else np.ascontiguousarray(out.T)


class SyntheticMusic:
    """Random-access source of procedural music excerpts (grain `RandomAccessDataSource`).

    Item `i` is a deterministic function of `(seed, i)`: a `segment_seconds` excerpt, starting
    anywhere in the first ~30 s of its own song, as float32 [T] (mono) or [T, channels].
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        segment_seconds: float = 1.0,
        num_examples: int = 1_000_000,
        seed: int = 0,
        channels: int = 1,
    ):
        if channels < 1 or sample_rate < 8000 or segment_seconds <= 0 or num_examples < 1:
            raise ValueError("need channels >= 1, sample_rate >= 8000, positive sizes")
        self.sample_rate = sample_rate
        self.segment_seconds = segment_seconds
        self.num_examples = num_examples
        self.seed = seed
        self.channels = channels

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if index < 0:
            index += self.num_examples
        if not 0 <= index < self.num_examples:
            raise IndexError(f"index {index} out of range for {self.num_examples} examples")
        rng = np.random.default_rng([self.seed, index])
        song_seed = int(rng.integers(2**62))
        offset = float(rng.uniform(0.0, 30.0))
        song = plan_song(song_seed, offset + self.segment_seconds + 1.0)
        pre = min(_PRE_ROLL, offset)
        n = int(round(self.segment_seconds * self.sample_rate))
        out = render(
            song, offset - pre, pre + self.segment_seconds, self.sample_rate, self.channels, rng
        )
        out = master(out[:, out.shape[1] - n :], song)
        return out[0] if self.channels == 1 else np.ascontiguousarray(out.T)

    def render_song(self, seconds: float, seed: int) -> np.ndarray:
        """A longer piece (eval/demo) at this source's sample rate and channel count."""
        return render_song(seconds, seed, self.sample_rate, self.channels)

    def __repr__(self) -> str:
        return (
            f"SyntheticMusic(sample_rate={self.sample_rate}, segment_seconds="
            f"{self.segment_seconds}, num_examples={self.num_examples}, seed={self.seed}, "
            f"channels={self.channels})"
        )
