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

Everything is vectorized NumPy (no per-sample Python loops): one second of audio at 44.1 kHz takes
about 7 ms of one CPU core. Mixes are scaled to a random loudness (RMS of about -24 to -10 dBFS)
with the peak kept at or below 0.9, so nothing clips.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random

import numpy as np

_MODES = (
    (0, 2, 4, 5, 7, 9, 11),  # ionian (major)
    (0, 2, 3, 5, 7, 8, 10),  # aeolian (natural minor)
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 2, 4, 5, 7, 9, 10),  # mixolydian
    (0, 2, 4, 6, 7, 9, 11),  # lydian
    (0, 1, 3, 5, 7, 8, 10),  # phrygian
    (0, 2, 3, 5, 7, 8, 11),  # harmonic minor
)
_MODE_WEIGHTS = (5, 4, 2, 2, 1, 1, 1)
# Scale degrees (0 = tonic) of common progressions; also used in the minor modes.
_PROGRESSIONS = (
    (0, 4, 5, 3),
    (0, 5, 3, 4),
    (5, 3, 0, 4),
    (0, 3, 4, 3),
    (1, 4, 0, 0),
    (0, 6, 5, 4),
    (0, 3, 0, 4),
    (0, 2, 3, 4),
    (0, 5, 1, 4),
)
_TABLE_SIZE = 2048  # wavetable length (power of two: the index wraps with a bit mask)
_BLOCK = 1024  # phases restart from float64 anchors every block to keep float32 precision
_PRE_ROLL = 0.25  # seconds rendered before an excerpt so reverb and notes are already sounding


@dataclasses.dataclass
class _Inst:
    """One melodic instrument: oscillator kind, envelope and mix settings."""

    kind: str  # "table" | "sub" | "fm" | "pluck"
    level: float
    pan: float  # 0 = left, 1 = right
    send: float  # reverb send
    attack: float = 0.01
    decay: float = 0.2
    sustain: float = 0.7
    release: float = 0.1
    perc: float = 0.0  # > 0: exponential decay time (s) instead of a sustain level
    vib_depth: float = 0.0  # fraction of f0
    vib_rate: float = 5.0
    detune: float = 0.0  # second unison voice, fraction of f0 (0 = one voice)
    amps: np.ndarray | None = None  # "table": harmonic amplitudes
    wave: str = "saw"  # "sub": saw | square | pulse
    width: float = 0.5  # "sub": pulse width
    cutoff: float = 1000.0  # "sub": low-pass cutoff (Hz) after the filter envelope
    cutoff_env: float = 0.0  # "sub": extra cutoff (Hz) at note start
    fenv: float = 0.2  # "sub": filter / "fm": index envelope time (s)
    q: float = 0.7  # "sub": resonance
    ratio: float = 1.0  # "fm": modulator / carrier frequency
    index: float = 0.0  # "fm": modulation index at note start
    index_sus: float = 0.0  # "fm": modulation index after the envelope
    t60: float = 1.0  # "pluck": low-frequency decay time (s)
    bright: float = 3000.0  # "pluck": frequency (Hz) where the decay is twice as fast
    tilt: float = 1.0  # "pluck": excitation spectrum falls as harmonic ** -tilt


@dataclasses.dataclass
class _Section:
    start_bar: int
    bpm: float
    root: int  # tonic pitch class
    scale: tuple[int, ...]
    motif: int  # sections with the same motif repeat melody and drum patterns
    progression: tuple[int, ...]
    melody_on: bool
    hats_on: bool


@dataclasses.dataclass
class _Song:
    """Everything drawn once per song; notes are drawn per bar from `seed`."""

    seed: int
    beats_per_bar: int
    chords_per_bar: int
    sevenths: bool
    swing: float
    humanize: float
    sections: list[_Section]
    section_starts: list[int]
    bar_times: list[float]  # start time of every bar plus the end of the song
    lead: _Inst
    bass: _Inst
    chords: _Inst
    chord_style: str  # "pad" | "arp" | "stab"
    arp_rate: int  # arpeggio notes per beat
    bass_style: str
    mel_durs: tuple[float, ...]  # melody note lengths in beats
    kit: dict | None  # drum synthesis parameters, or None for no drums
    drum_styles: list[tuple[str, str, str]]  # (kick, snare, hats) per motif
    reverb: tuple[float, float]  # (RT60 seconds, wet level)
    drive: float  # master tanh saturation amount
    loudness_db: float

    def section(self, bar: int) -> _Section:
        return self.sections[bisect.bisect_right(self.section_starts, bar) - 1]


# --------------------------------------------------------------------------------------------
# Composition


def _mix(*values: int) -> int:
    """A 64-bit hash of integers, stable across Python versions (unlike `hash`)."""
    mask = (1 << 64) - 1
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = ((h ^ (v & mask)) * 0xBF58476D1CE4E5B9) & mask
        h ^= h >> 31
    return h


def _deg(scale: tuple[int, ...], degree: int) -> int:
    """Semitones above the tonic of a (possibly negative or > 7) scale degree."""
    octave, step = divmod(degree, 7)
    return scale[step] + 12 * octave


def _make_instrument(rnd: random.Random, role: str) -> _Inst:
    """Draws a timbre for role "lead", "bass", "pad" or "arp" (also used for stabs)."""
    kinds = {
        "lead": ("table", "sub", "fm", "pluck"),
        "bass": ("sub", "sub", "table", "fm", "pluck"),
        "pad": ("table", "sub"),
        "arp": ("pluck", "fm", "sub", "table"),
    }[role]
    kind = rnd.choice(kinds)
    inst = _Inst(
        kind=kind,
        level=rnd.uniform(0.5, 1.0),
        pan=rnd.uniform(0.1, 0.9) if role != "bass" else 0.5,
        send=rnd.uniform(0.05, 0.5) if role != "bass" else rnd.uniform(0.0, 0.1),
        attack=rnd.uniform(0.003, 0.03),
        decay=rnd.uniform(0.05, 0.4),
        sustain=rnd.uniform(0.4, 0.9),
        release=rnd.uniform(0.03, 0.2),
    )
    if role == "pad":
        inst.attack, inst.release = rnd.uniform(0.05, 0.4), rnd.uniform(0.2, 0.6)
        inst.detune = rnd.uniform(0.002, 0.008)
    if role == "lead" and rnd.random() < 0.6:
        inst.vib_depth, inst.vib_rate = rnd.uniform(0.002, 0.012), rnd.uniform(4.0, 7.0)
    if role == "arp" or (role != "pad" and rnd.random() < 0.3):
        inst.perc = rnd.uniform(0.08, 0.6)  # plucky / keys-like decay
    if kind == "table":
        n = 48
        h = np.arange(1, n + 1, dtype=np.float32)
        amps = h ** -rnd.uniform(0.6, 2.2)
        amps[1::2] *= rnd.uniform(0.1, 1.0)  # even harmonics weaker: hollow / clarinet-like
        formant = rnd.uniform(2.0, 12.0)
        amps *= 1.0 + rnd.uniform(0.0, 3.0) * np.exp(-0.5 * ((h - formant) / 1.5) ** 2)
        inst.amps = amps * np.array([rnd.uniform(0.5, 1.0) for _ in range(n)], np.float32)
    elif kind == "sub":
        inst.wave = rnd.choice(("saw", "square", "pulse"))
        inst.width = rnd.uniform(0.1, 0.4)
        inst.cutoff = rnd.uniform(300, 1200) if role == "bass" else rnd.uniform(600, 5000)
        inst.cutoff_env = rnd.uniform(0, 4000) if rnd.random() < 0.7 else 0.0
        inst.fenv = rnd.uniform(0.03, 0.4)
        inst.q = rnd.uniform(0.5, 4.0)
    elif kind == "fm":
        # Inharmonic ratios (bells) only for the upper voices: a bass must carry its pitch.
        inst.ratio = rnd.choice(
            (1.0, 2.0, 0.5) if role == "bass" else (1.0, 1.0, 2.0, 3.0, 1.4, 3.5)
        )
        inst.index = rnd.uniform(0.5, 5.0)
        inst.index_sus = rnd.uniform(0.0, 1.0)
        inst.fenv = rnd.uniform(0.05, 0.5)
    else:
        inst.t60 = rnd.uniform(0.3, 3.0)
        inst.bright = rnd.uniform(800, 8000)
        inst.tilt = rnd.uniform(1.0, 1.6) if role == "bass" else rnd.uniform(0.5, 1.3)
        inst.perc = 0.0  # the string decays on its own
        inst.release = rnd.uniform(0.02, 0.08)
    return inst


def _plan_song(seed: int, min_seconds: float) -> _Song:
    """Draws a song at least `min_seconds` long: meter, sections, instruments, drum kit."""
    rnd = random.Random(seed)
    bpb = 3 if rnd.random() < 0.15 else 4
    bpm = rnd.uniform(60.0, 180.0)
    root, scale = rnd.randrange(12), rnd.choices(_MODES, _MODE_WEIGHTS)[0]
    progressions = []
    for _ in range(rnd.choice((1, 2, 2, 3))):
        if rnd.random() < 0.25:  # a random walk over degrees instead of a stock progression
            progressions.append((0,) + tuple(rnd.randrange(7) for _ in range(3)))
        else:
            progressions.append(rnd.choice(_PROGRESSIONS))
    n_motifs = len(progressions)
    sections, starts, bar_times = [], [], [0.0]
    bar = 0
    while bar_times[-1] < min_seconds:
        if sections:  # occasional tempo change and modulation at section boundaries
            if rnd.random() < 0.15:
                bpm = min(180.0, max(60.0, bpm * rnd.choice((0.75, 0.8, 0.9, 1.1, 1.25, 1.33))))
            if rnd.random() < 0.2:
                root = (root + rnd.choice((1, 2, -2, 5, 7, -5, 3))) % 12
                if rnd.random() < 0.3:
                    scale = rnd.choices(_MODES, _MODE_WEIGHTS)[0]
        motif = len(sections) % n_motifs if rnd.random() < 0.7 else rnd.randrange(n_motifs)
        sec = _Section(
            bar,
            bpm,
            root,
            scale,
            motif,
            progressions[motif],
            melody_on=rnd.random() < 0.85,
            hats_on=rnd.random() < 0.9,
        )
        sections.append(sec)
        starts.append(bar)
        for _ in range(rnd.choice((4, 8, 8))):
            bar_times.append(bar_times[-1] + bpb * 60.0 / bpm)
            bar += 1
    has_drums = rnd.random() < 0.85
    # Without drums the chords play an arpeggio so there is still a pulse.
    chord_style = rnd.choice(("pad", "arp", "stab")) if has_drums else "arp"
    kit = None
    if has_drums:
        kit = dict(
            kick_f=(rnd.uniform(100, 250), rnd.uniform(38, 60)),
            kick_tau=(rnd.uniform(0.015, 0.05), rnd.uniform(0.08, 0.35)),
            kick_click=rnd.uniform(0.0, 0.4),
            snare_f=rnd.uniform(160, 250),
            snare_tone=rnd.uniform(0.2, 0.6),
            snare_tau=(rnd.uniform(0.03, 0.08), rnd.uniform(0.06, 0.2)),
            snare_bright=rnd.uniform(0.0, 1.0),
            hat_tau=(rnd.uniform(0.01, 0.05), rnd.uniform(0.12, 0.4)),
            crash_tau=rnd.uniform(0.6, 1.5),
            tom_f=rnd.uniform(80, 160),
            levels=[rnd.uniform(0.7, 1.0), rnd.uniform(0.4, 0.8), rnd.uniform(0.1, 0.35)],
            pans=[0.5, rnd.uniform(0.4, 0.6), rnd.uniform(0.15, 0.85)],
            send=rnd.uniform(0.0, 0.3),
        )
    drum_styles = [
        (
            rnd.choice(("four", "rock", "break", "half")),
            rnd.choice(("back", "back", "half")),
            rnd.choice(("eighth", "sixteenth", "quarter", "offopen")),
        )
        for _ in range(n_motifs)
    ]
    fast = bpm > 130  # then notes are longer in beats
    return _Song(
        seed=seed,
        beats_per_bar=bpb,
        chords_per_bar=rnd.choice((1, 1, 2)) if bpm > 90 else 1,
        sevenths=rnd.random() < 0.3,
        swing=rnd.uniform(0.1, 0.3) if rnd.random() < 0.25 else 0.0,
        humanize=rnd.uniform(0.0, 0.008),
        sections=sections,
        section_starts=starts,
        bar_times=bar_times,
        lead=_make_instrument(rnd, "lead"),
        bass=_make_instrument(rnd, "bass"),
        chords=_make_instrument(rnd, "pad" if chord_style == "pad" else "arp"),
        chord_style=chord_style,
        arp_rate=rnd.choice((2, 2, 4)) if bpm < 140 else 2,
        bass_style=rnd.choice(("whole", "quarter", "eighth", "fifth", "sync")),
        mel_durs=(1.0, 2.0, 0.5, 1.5) if fast else (0.25, 0.5, 0.5, 1.0, 1.5, 2.0),
        kit=kit,
        drum_styles=drum_styles,
        reverb=(rnd.uniform(0.3, 2.0), rnd.uniform(0.05, 0.35) if rnd.random() < 0.8 else 0.0),
        drive=rnd.uniform(0.3, 2.0),
        loudness_db=rnd.uniform(-24.0, -10.0),
    )


def _bar_events(song: _Song, bar: int) -> list[tuple]:
    """Notes of one bar as (track, onset s, duration s, midi pitch or drum parameter, velocity)."""
    sec = song.section(bar)
    bpb, t0 = song.beats_per_bar, song.bar_times[bar]
    beat = (song.bar_times[bar + 1] - t0) / bpb
    in_sec = bar - sec.start_bar
    # Phrases repeat: the seed depends on the motif and position in a 4-bar phrase, with
    # occasional one-off variations.
    base = random.Random(_mix(song.seed, 1, bar))
    if base.random() < 0.2:
        rnd = random.Random(_mix(song.seed, 2, bar))
    else:
        rnd = random.Random(_mix(song.seed, 3, sec.motif, in_sec % 4))
    events: list[tuple] = []

    def at(pos: float) -> float:  # beats -> seconds, with swing on off-beat 8ths and jitter
        if song.swing and (pos * 2) % 2 == 1:
            pos += song.swing * 0.5
        return t0 + pos * beat + base.gauss(0.0, song.humanize)

    cpb = song.chords_per_bar
    chord_beats = bpb / cpb
    prog = sec.progression
    for c in range(cpb):
        degree = prog[(in_sec * cpb + c) % len(prog)]
        degs = [degree, degree + 2, degree + 4] + ([degree + 6] if song.sevenths else [])
        pcs = [sec.root + _deg(sec.scale, d) for d in degs]
        center = 62
        chord = sorted(((p - center + 6) % 12) + center - 6 for p in pcs)  # close voicing
        start = c * chord_beats
        if song.chord_style == "pad":
            for p in chord:
                events.append(("chords", at(start), chord_beats * beat, p, 0.35))
        elif song.chord_style == "arp":
            seq = chord + [p + 12 for p in chord]
            order = rnd.choice(("up", "down", "updown"))
            if order == "down":
                seq = seq[::-1]
            elif order == "updown":
                seq = seq + seq[-2:0:-1]
            n = int(chord_beats * song.arp_rate)
            step = 1.0 / song.arp_rate
            for k in range(n):
                vel = 0.8 if k % song.arp_rate == 0 else 0.55
                events.append(
                    ("chords", at(start + k * step), step * beat * 0.8, seq[k % len(seq)], vel)
                )
        else:
            for k in range(int(chord_beats * 2)):
                if (k % 2 == 1 and rnd.random() < 0.8) or rnd.random() < 0.15:
                    for p in chord:
                        events.append(("chords", at(start + k * 0.5), 0.3 * beat, p, 0.4))
        # Bass on the chord root, in E1..D#2 (41-78 Hz) so there is always low-end energy.
        bass_root = 28 + (pcs[0] - 4) % 12
        style = song.bass_style
        if style == "whole":
            hits = [(0.0, chord_beats, bass_root)]
        elif style in ("quarter", "fifth"):
            fifth = bass_root + 7
            hits = [
                (k, 1.0, fifth if style == "fifth" and k % 2 else bass_root)
                for k in range(int(chord_beats))
            ]
        elif style == "eighth":
            hits = [
                (k * 0.5, 0.5, bass_root + (12 if k % 4 == 3 else 0))
                for k in range(int(chord_beats * 2))
            ]
        else:
            hits = [(0.0, 1.5, bass_root), (1.5, 1.0, bass_root), (2.5, 0.5, bass_root + 12)]
            hits = [h for h in hits if h[0] < chord_beats]
        for pos, dur, p in hits:
            events.append(
                ("bass", at(start + pos), min(dur, chord_beats - pos) * beat * 0.9, p, 0.9)
            )

    if sec.melody_on:
        lo, hi = -1, 10  # scale degrees around the tonic above middle C
        degree = prog[(in_sec * cpb) % len(prog)] + rnd.choice((0, 2, 4, 7))
        pos = 0.0
        while pos < bpb - 1e-6:
            dur = min(rnd.choice(song.mel_durs), bpb - pos)
            if rnd.random() < 0.12:  # rest
                pos += dur
                continue
            step = rnd.choice((-2, -1, -1, 0, 1, 1, 2, rnd.choice((-4, -3, 3, 4, 5))))
            degree += step
            if degree < lo or degree > hi:
                degree = min(max(degree - 2 * step, lo), hi)
            if pos == int(pos) and rnd.random() < 0.5:  # land on a chord tone on the beat
                chord_root = prog[(in_sec * cpb + int(pos // chord_beats)) % len(prog)]
                degree += (chord_root - degree) % 2 * rnd.choice((-1, 1))
            pitch = 60 + sec.root + _deg(sec.scale, degree)
            vel = rnd.uniform(0.6, 1.0)
            events.append(("lead", at(pos), dur * beat * rnd.uniform(0.6, 1.0), pitch, vel))
            pos += dur

    if song.kit is not None:
        events += _drum_bar(song, sec, in_sec, rnd, base, at)
    return events


def _drum_bar(song: _Song, sec: _Section, in_sec: int, rnd, base, at) -> list[tuple]:
    """Drum hits of one bar: the section's pattern plus random ghost notes, fills and crashes."""
    bpb = song.beats_per_bar
    steps = 4 * bpb
    kick_style, snare_style, hat_style = song.drum_styles[sec.motif]
    hits: list[tuple[str, int, float]] = []
    if kick_style == "four":
        kicks = list(range(0, steps, 4))
    elif kick_style == "rock":
        kicks = [0, 8, 10] if bpb == 4 else [0, 6]
    elif kick_style == "break":
        kicks = [0, 7, 10] if bpb == 4 else [0, 7]
    else:
        kicks = [0, 11] if bpb == 4 else [0]
    kicks += [s for s in range(1, steps) if rnd.random() < 0.04]
    hits += [("kick", s, 1.0) for s in kicks]
    if snare_style == "back" or bpb == 3:
        snares = [4, 12] if bpb == 4 else [4, 8]
    else:
        snares = [8]
    hits += [("snare", s, 0.9) for s in snares]
    hits += [("snare", s, 0.25) for s in range(steps) if s not in snares and rnd.random() < 0.06]
    if sec.hats_on:
        every = {"eighth": 2, "sixteenth": 1, "quarter": 4, "offopen": 4}[hat_style]
        for s in range(0, steps, every):
            if base.random() > 0.04:
                hits.append(("hat", s, 0.9 if s % 4 == 0 else 0.6))
        if hat_style == "offopen":
            hits += [("ohat", s, 0.7) for s in range(2, steps, 4)]
    if in_sec == _section_len(song, sec) - 1 and rnd.random() < 0.6:  # fill into the next section
        for s in range(steps - 4, steps):
            hits.append((rnd.choice(("snare", "tom")), s, 0.5 + 0.12 * (s - steps + 4)))
    if in_sec == 0 and (sec.start_bar > 0 or base.random() < 0.3) and base.random() < 0.7:
        hits.append(("crash", 0, 0.8))
    # The last element is a random number each drum uses for its noise offset or tom pitch.
    return [(k, at(s / 4), 0.0, base.random(), v * base.uniform(0.85, 1.0)) for k, s, v in hits]


def _section_len(song: _Song, sec: _Section) -> int:
    i = bisect.bisect_right(song.section_starts, sec.start_bar) - 1
    end = song.section_starts[i + 1] if i + 1 < len(song.sections) else len(song.bar_times) - 1
    return end - sec.start_bar


# --------------------------------------------------------------------------------------------
# Synthesis


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


def _envelope(inst: _Inst, t: np.ndarray, dur: float) -> np.ndarray:
    """ADSR (or attack + exponential decay) with a linear release after note-off at `dur`."""
    attack = t * np.float32(1.0 / inst.attack)
    if inst.perc > 0:
        env = np.minimum(attack, 1.0) * np.exp(t * np.float32(-1.0 / inst.perc))
    else:
        decay = np.clip((t - inst.attack) * (1.0 / inst.decay), 0.0, 1.0)
        env = np.minimum(attack, 1.0 - (1.0 - inst.sustain) * decay)
    return env * np.clip((dur + inst.release - t) * np.float32(1.0 / inst.release), 0.0, 1.0)


def _sub_amps(inst: _Inst, f0: float, cutoff: float, n: int) -> np.ndarray:
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


def _pluck(inst: _Inst, f0: float, m: int, r: _Renderer, u: float) -> np.ndarray:
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


def _note(inst: _Inst, f0: float, dur: float, vel: float, n0: int, n1: int, r: _Renderer, u: float):
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


def _render(song: _Song, start: float, seconds: float, sr: int, channels: int, rng) -> np.ndarray:
    """Renders [start, start + seconds) of `song` as float32 [channels, T], before loudness."""
    n = int(round(seconds * sr))
    r = _Renderer(sr, n, rng)
    first = max(0, bisect.bisect_right(song.bar_times, start) - 2)  # notes still ringing
    last = min(len(song.bar_times) - 2, bisect.bisect_right(song.bar_times, start + seconds))
    events = [e for b in range(first, last + 1) for e in _bar_events(song, b)]

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


def _master(out: np.ndarray, song: _Song) -> np.ndarray:
    """Gentle tanh bus saturation, then the song's loudness with the peak kept at or below 0.9."""
    peak = np.abs(out).max()
    if peak < 1e-6:
        return out
    d = song.drive
    out = np.tanh(out * np.float32(d / peak)) * np.float32(1.0 / d)
    rms = math.sqrt(float(np.mean(np.square(out))))
    gain = min(10.0 ** (song.loudness_db / 20.0) / rms, 0.9 / np.abs(out).max())
    return out * np.float32(gain)


# --------------------------------------------------------------------------------------------
# Public API


def render_song(
    seconds: float, seed: int, sample_rate: int = 44100, channels: int = 1
) -> np.ndarray:
    """A whole song from its start: float32 [T] (mono) or [T, channels]."""
    song = _plan_song(int(np.random.default_rng([seed, 1]).integers(2**62)), seconds)
    out = _master(
        _render(song, 0.0, seconds, sample_rate, channels, np.random.default_rng([seed, 2])), song
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
        song = _plan_song(song_seed, offset + self.segment_seconds + 1.0)
        pre = min(_PRE_ROLL, offset)
        n = int(round(self.segment_seconds * self.sample_rate))
        out = _render(
            song, offset - pre, pre + self.segment_seconds, self.sample_rate, self.channels, rng
        )
        out = _master(out[:, out.shape[1] - n :], song)
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
