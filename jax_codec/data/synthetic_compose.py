"""Procedural music, composition: what a synthetic song plays.

`plan_song(seed, min_seconds)` draws a `Song` once: meter, tempo, key and mode, sections of 4 or
8 bars (with occasional tempo changes and modulations), chord progressions, the timbre parameters
of each `Instrument`, the drum kit and the drum patterns. `bar_events(song, bar)` then draws the
notes of one bar (chords as a pad, an arpeggio or stabs; the bass line; the melody; drum hits with
ghost notes, fills and crashes) from a hash of `(seed, bar)`, so any bar can be drawn without the
ones before it and phrases repeat within a section. Turning these events into audio is
`synthetic_render`.
"""

from __future__ import annotations

import bisect
import dataclasses
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


@dataclasses.dataclass
class Instrument:
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
class Section:
    start_bar: int
    bpm: float
    root: int  # tonic pitch class
    scale: tuple[int, ...]
    motif: int  # sections with the same motif repeat melody and drum patterns
    progression: tuple[int, ...]
    melody_on: bool
    hats_on: bool


@dataclasses.dataclass
class Song:
    """Everything drawn once per song; notes are drawn per bar from `seed`."""

    seed: int
    beats_per_bar: int
    chords_per_bar: int
    sevenths: bool
    swing: float
    humanize: float
    sections: list[Section]
    section_starts: list[int]
    bar_times: list[float]  # start time of every bar plus the end of the song
    lead: Instrument
    bass: Instrument
    chords: Instrument
    chord_style: str  # "pad" | "arp" | "stab"
    arp_rate: int  # arpeggio notes per beat
    bass_style: str
    mel_durs: tuple[float, ...]  # melody note lengths in beats
    kit: dict | None  # drum synthesis parameters, or None for no drums
    drum_styles: list[tuple[str, str, str]]  # (kick, snare, hats) per motif
    reverb: tuple[float, float]  # (RT60 seconds, wet level)
    drive: float  # master tanh saturation amount
    loudness_db: float

    def section(self, bar: int) -> Section:
        return self.sections[bisect.bisect_right(self.section_starts, bar) - 1]


# --------------------------------------------------------------------------------------------
# Random draws


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


def _make_instrument(rnd: random.Random, role: str) -> Instrument:
    """Draws a timbre for role "lead", "bass", "pad" or "arp" (also used for stabs)."""
    kinds = {
        "lead": ("table", "sub", "fm", "pluck"),
        "bass": ("sub", "sub", "table", "fm", "pluck"),
        "pad": ("table", "sub"),
        "arp": ("pluck", "fm", "sub", "table"),
    }[role]
    kind = rnd.choice(kinds)
    inst = Instrument(
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


def plan_song(seed: int, min_seconds: float) -> Song:
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
        sec = Section(
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
    return Song(
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


def bar_events(song: Song, bar: int) -> list[tuple]:
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


def _drum_bar(song: Song, sec: Section, in_sec: int, rnd, base, at) -> list[tuple]:
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


def _section_len(song: Song, sec: Section) -> int:
    i = bisect.bisect_right(song.section_starts, sec.start_bar) - 1
    end = song.section_starts[i + 1] if i + 1 < len(song.sections) else len(song.bar_times) - 1
    return end - sec.start_bar
