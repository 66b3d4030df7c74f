"""The data pipeline on generated files: folder source, bad input, sharding, resume, mixtures."""

import os
import re

import grain
import numpy as np
import pytest
import soundfile as sf

from jax_codec.config import ConfigError, apply_overrides, load_config
from jax_codec.data import audio, augment, pipeline
from jax_codec.data.sources import FolderClips

SR = 16000
SEG = 1600  # 0.1 s at 16 kHz


def tone(freq, seconds, sr, channels=1, level=0.3, seed=0):
    t = np.arange(int(round(seconds * sr))) / sr
    x = level * np.sin(2 * np.pi * freq * t)
    noise = 0.01 * np.random.default_rng(seed).standard_normal((len(t), channels))
    return (x[:, None] + noise).astype(np.float32)


def write_good(root, n=6, seconds=1.0):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        sf.write(
            os.path.join(root, f"song{i:02d}.wav"), tone(200 + 40 * i, seconds, SR, seed=i), SR
        )


def config_for(source, **over):
    c = load_config("configs/base.py:runlocal")
    values = {
        "data.source": source,
        "data.num_threads": "0",
        "train.batch_size": "4",
        "data.index_workers": "2",
    }
    values.update({k: str(v) for k, v in over.items()})
    apply_overrides(c, values)
    return c


def batches(data, n):
    it = iter(data.dataset)
    return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    """A folder with every kind of bad input next to a few good files."""
    root = str(tmp_path_factory.mktemp("bad"))
    write_good(os.path.join(root, "good"), n=3)
    sf.write(f"{root}/rate8k.wav", tone(300, 1.0, 8000), 8000)
    sf.write(f"{root}/rate192k.flac", tone(500, 0.5, 192000, channels=2), 192000)
    sf.write(f"{root}/surround.wav", tone(700, 0.5, 48000, channels=6), 48000)
    sf.write(f"{root}/short.ogg", tone(900, 0.03, SR), SR)  # shorter than a segment
    sf.write(f"{root}/mp3file.mp3", tone(440, 1.0, 44100), 44100)
    open(f"{root}/empty.wav", "wb").close()
    with open(f"{root}/corrupt.flac", "wb") as f:
        f.write(np.random.default_rng(0).bytes(4000))
    sf.write(f"{root}/silent.wav", np.zeros((SR, 1), np.float32), SR)
    x = tone(300, 0.5, SR)
    x[100] = np.nan
    sf.write(f"{root}/nan.wav", x, SR, subtype="FLOAT")
    with open(f"{root}/song.m4a", "wb") as f:
        f.write(b"\0" * 100)
    with open(f"{root}/README.txt", "w") as f:
        f.write("not audio")
    sf.write(f"{root}/locked.wav", tone(300, 0.5, SR), SR)
    os.symlink("/nonexistent/file.wav", f"{root}/dangling.wav")
    return root


@pytest.fixture
def deny_locked(monkeypatch):
    """Make `locked.wav` unreadable, also when tests run as root (chmod alone would not be)."""
    real = sf.SoundFile

    def soundfile(path, *a, **k):
        if isinstance(path, str) and path.endswith("locked.wav"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, *a, **k)

    monkeypatch.setattr(sf, "SoundFile", soundfile)


def test_folder_reports_every_bad_input(bad_folder, deny_locked, tmp_path):
    clips = FolderClips(bad_folder, SR, 1, cache_dir=str(tmp_path), min_frames=SEG, workers=2)
    r = clips.report
    skipped = {path: reason for reason, paths in r.skipped.items() for path in paths}
    assert skipped["empty.wav"].startswith("empty file")
    assert "corrupt" in skipped["corrupt.flac"]
    assert skipped["silent.wav"].startswith("all-silent")
    assert skipped["nan.wav"] == "NaN/inf samples"
    assert skipped["song.m4a"].startswith("unsupported format")
    assert "permission" in skipped["locked.wav"]
    assert skipped["dangling.wav"].startswith("unreadable")
    assert r.ignored == 1  # README.txt
    used = {os.path.basename(clips.path(i)) for i in range(len(clips))}
    assert used == {
        "song00.wav", "song01.wav", "song02.wav", "rate8k.wav", "rate192k.flac",
        "surround.wav", "short.ogg", "mp3file.mp3",
    }  # fmt: skip
    conv = dict(r.converted)
    assert conv[f"resampled (8000 Hz -> {SR} Hz)"] == 1
    assert conv[f"resampled (192000 Hz -> {SR} Hz)"] == 1
    assert conv["channel-converted (6 -> 1)"] == 1
    assert conv["shorter than a segment (zero-padded)"] == 1
    text = r.summary()
    assert "SKIPPED 7 files" in text and "locked.wav" in text
    # Every usable clip reads at the model rate with one channel, including the odd ones.
    for i in range(len(clips)):
        x = clips.read(i, 0, SEG)
        assert x.dtype == np.float32 and x.shape[1] == 1 and 0 < x.shape[0] <= SEG
        assert np.isfinite(x).all() and np.abs(x).max() > 0.05


def test_bad_folder_trains_without_crashing(bad_folder, deny_locked, tmp_path):
    c = config_for(f"folder:{bad_folder}", **{"data.augment.enabled": "False"})
    data = pipeline.build_train_data(c, SR, SEG, cache_dir=str(tmp_path))
    for b in batches(data, 6):
        assert b.shape == (4, SEG) and np.isfinite(b).all()
        rms = np.sqrt(np.mean(b**2, axis=1))
        assert (pipeline.audio.db(rms.min()) > c.data.silence_threshold_db) or rms.min() > 1e-3


def test_read_window_resamples_like_the_whole_file(tmp_path):
    path = str(tmp_path / "a.flac")
    x = tone(1000, 1.0, 48000, channels=2, seed=3)
    sf.write(path, x, 48000, subtype="PCM_24")
    whole = audio.resample(sf.read(path, dtype="float32", always_2d=True)[0], 48000, SR)
    info = audio.probe(path)
    start, n = 5000, 2000
    win = audio.read_window(path, start, n, SR, 2, info)
    assert win.shape == (n, 2)
    np.testing.assert_allclose(win, whole[start : start + n], atol=2e-3)
    mono = audio.read_window(path, start, n, SR, 1, info)
    np.testing.assert_allclose(mono[:, 0], win.mean(axis=1), atol=1e-6)
    tail = audio.read_window(path, SR - 100, n, SR, 1, info)
    assert tail.shape[0] == 100  # no samples past the end of the file
    with pytest.raises(audio.BadAudio, match="changed since indexing"):
        audio.read_window(path, 0, n, SR, 1, audio.AudioInfo(123, 48000, 2))


def test_index_cache_is_reused_and_invalidated(tmp_path):
    root = str(tmp_path / "music")
    write_good(root, n=5)
    cache = str(tmp_path / "cache")
    first = FolderClips(root, SR, 1, cache_dir=cache)
    assert first.index_stats["scanned"] == 5 and len(os.listdir(cache)) == 1
    second = FolderClips(root, SR, 1, cache_dir=cache)
    assert second.index_stats["scanned"] == 0 and len(second) == 5
    sf.write(os.path.join(root, "song01.wav"), tone(100, 2.0, SR), SR)  # size changes
    third = FolderClips(root, SR, 1, cache_dir=cache)
    assert third.index_stats["scanned"] == 1
    assert third.frames(1) == 2 * SR


def test_missing_folder_and_bad_specs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        pipeline.build_train_data(config_for(f"folder:{tmp_path}/nope"), SR, SEG)
    with pytest.raises(ConfigError, match="is not a source"):
        pipeline.build_train_data(config_for("mp3:/music"), SR, SEG)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no usable audio"):
        pipeline.build_train_data(config_for(f"folder:{empty}"), SR, SEG)
    with pytest.raises(ConfigError, match="one weight per source"):
        c = config_for(
            "synthetic", **{"data.sources": ("synthetic", "synthetic"), "data.weights": (1.0,)}
        )
        pipeline.build_train_data(c, SR, SEG)


def test_batches_are_deterministic_and_resume_exactly(tmp_path):
    root = str(tmp_path / "music")
    write_good(root, n=6, seconds=2.0)
    c = config_for(f"folder:{root}", **{"data.num_threads": "2", "data.augment.mix_prob": "0.5"})
    a = batches(pipeline.build_train_data(c, SR, SEG), 5)
    b = batches(pipeline.build_train_data(c, SR, SEG), 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    it = iter(pipeline.build_train_data(c, SR, SEG).dataset)
    for _ in range(3):
        next(it)
    state = it.get_state()
    fresh = iter(pipeline.build_train_data(c, SR, SEG).dataset)
    fresh.set_state(state)
    for want in a[3:]:
        np.testing.assert_array_equal(next(fresh), want)


def test_hosts_read_disjoint_files(tmp_path):
    root = str(tmp_path / "music")
    write_good(root, n=8)
    c = config_for(f"folder:{root}")
    seen = []
    for index in range(2):
        opts = grain.sharding.ShardOptions(shard_index=index, shard_count=2, drop_remainder=True)
        data = pipeline.build_train_data(c, SR, SEG, shard=opts)
        assert next(iter(data.dataset)).shape == (2, SEG)  # half of the global batch of 4
        seen.append({data.slots[k][1] for k in range(200)})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(8))
    with pytest.raises(ConfigError, match="fewer than the 16 hosts"):
        opts = grain.sharding.ShardOptions(shard_index=0, shard_count=16)
        pipeline.build_train_data(
            config_for(f"folder:{root}", **{"train.batch_size": "16"}), SR, SEG, shard=opts
        )


def test_long_files_are_drawn_in_proportion_to_length(tmp_path):
    root = str(tmp_path / "music")
    os.makedirs(root)
    sf.write(f"{root}/long.wav", tone(200, 4.0, SR), SR)
    sf.write(f"{root}/short.wav", tone(400, 0.4, SR), SR)
    data = pipeline.build_train_data(config_for(f"folder:{root}"), SR, SEG)
    clips = [data.slots[k][1] for k in range(440)]
    assert clips.count(0) == 400 and clips.count(1) == 40  # 40 + 4 slots, every epoch


def test_weighted_mixture(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_good(a, n=3)
    write_good(b, n=3)
    c = config_for(
        "synthetic", **{"data.sources": (f"folder:{a}", f"folder:{b}"), "data.weights": (3, 1)}
    )
    data = pipeline.build_train_data(c, SR, SEG)
    picks = [data.slots[k][0] for k in range(400)]
    assert picks.count(0) == 300 and picks.count(1) == 100
    assert next(iter(data.dataset)).shape == (4, SEG)
    assert len(data.reports) == 2


def test_silent_crops_are_rejected_and_counted(tmp_path):
    root = str(tmp_path / "music")
    os.makedirs(root)
    x = tone(300, 4.0, SR)
    x[: 3 * SR] = 0.0  # three silent seconds, then one loud
    sf.write(f"{root}/mostly_silent.wav", x, SR)
    c = config_for(f"folder:{root}", **{"data.augment.enabled": "False"})
    data = pipeline.build_train_data(c, SR, SEG)
    for b in batches(data, 4):
        assert pipeline.rms_db(b[0]) > -60 and pipeline.rms_db(b[-1]) > -60
    assert data.stats.snapshot()["data/silent_crops"] > 0


def test_nothing_usable_raises_a_clear_data_error(tmp_path):
    root = str(tmp_path / "music")
    os.makedirs(root)
    sf.write(f"{root}/quiet.wav", tone(300, 1.0, SR, level=1e-3) * 1e-2, SR)
    c = config_for(f"folder:{root}", **{"data.content_check": "False"})
    data = pipeline.build_train_data(c, SR, SEG)
    with pytest.raises(pipeline.DataError, match="silence_threshold_db"):
        next(iter(data.dataset))


def test_stereo_gives_each_channel_a_row(tmp_path):
    root = str(tmp_path / "music")
    os.makedirs(root)
    left = tone(300, 1.0, SR)[:, 0]
    sf.write(f"{root}/st.wav", np.stack([left, -0.5 * left], axis=1), SR)
    c = config_for(f"folder:{root}", **{"data.channels": "2", "data.augment.enabled": "False"})
    b = next(iter(pipeline.build_train_data(c, SR, SEG).dataset))
    assert b.shape == (4, SEG)
    np.testing.assert_allclose(b[1], -0.5 * b[0], atol=1e-4)
    np.testing.assert_allclose(b[3], -0.5 * b[2], atol=1e-4)


def test_eval_batch_is_fixed_and_unaugmented(tmp_path):
    root = str(tmp_path / "music")
    write_good(root, n=4)
    c = config_for(f"folder:{root}", **{"data.augment.gain_db": (-20.0, -20.0)})
    e1 = pipeline.eval_batch(c, SR, 2048, 3)
    e2 = pipeline.eval_batch(c, SR, 2048, 3)
    np.testing.assert_array_equal(e1, e2)
    assert e1.shape == (3, 2048)
    assert np.abs(e1).max() > 0.1  # normalized to -18 dB; a -20 dB gain would leave < 0.02
    c2 = config_for("synthetic", **{"data.eval_source": f"folder:{root}"})
    np.testing.assert_array_equal(pipeline.eval_batch(c2, SR, 2048, 3), e1)


def test_augmentation():
    cfg = augment.default_config()
    x = tone(440, 0.5, SR)
    y1 = augment.augment(x, np.random.default_rng(1), cfg, SR)
    y2 = augment.augment(x, np.random.default_rng(1), cfg, SR)
    np.testing.assert_array_equal(y1, y2)
    assert np.abs(y1).max() <= cfg.peak_limit + 1e-6
    with cfg.unlocked():
        cfg.gain_db = (-6.0, -6.0)
        cfg.polarity_prob = 1.0
        cfg.eq_prob = 0.0
    y = augment.augment(x, np.random.default_rng(0), cfg, SR)
    np.testing.assert_allclose(y, -x * 10 ** (-6 / 20), rtol=1e-5, atol=1e-7)
    with cfg.unlocked():
        cfg.mix_prob = 1.0
        cfg.polarity_prob = 0.0
        cfg.gain_db = (0.0, 0.0)
    other = tone(1000, 0.5, SR, seed=5)
    mixed = augment.augment(x, np.random.default_rng(0), cfg, SR, other=lambda: other)
    assert abs(np.corrcoef(mixed[:, 0], other[:, 0])[0, 1]) > 0.3
    b, a = augment.peaking_biquad(1000.0, 0.0, 1.0, SR)  # 0 dB: identity
    np.testing.assert_allclose(b, a, atol=1e-12)
    with cfg.unlocked():
        cfg.enabled = False
    assert augment.augment(x, np.random.default_rng(0), cfg, SR) is x


def test_gap_augmentation_silences_a_faded_span_of_both_channels():
    """`gap_prob`: a span of the drawn length is exactly silent in every channel, with fades
    on both sides; off (the default), the other augmentations' draws are unchanged."""
    x = np.stack([tone(440, 1.0, SR)[:, 0], tone(660, 1.0, SR)[:, 0]], 1) + 0.5
    cfg = augment.default_config()
    with cfg.unlocked():
        cfg.gain_db, cfg.polarity_prob, cfg.eq_prob = (0.0, 0.0), 0.0, 0.0
    plain = augment.augment(x, np.random.default_rng(3), cfg, SR)
    with cfg.unlocked():
        cfg.gap_prob, cfg.gap_fraction, cfg.gap_fade_ms = 1.0, (0.25, 0.25), 10.0
    y = augment.augment(x, np.random.default_rng(3), cfg, SR)
    silent = np.flatnonzero(np.all(y == 0, axis=1))
    assert len(silent) == SR // 4 and np.all(np.diff(silent) == 1)
    start, end, fade = silent[0], silent[-1] + 1, SR // 100
    np.testing.assert_array_equal(y[: start - fade], plain[: start - fade])
    np.testing.assert_array_equal(y[end + fade :], plain[end + fade :])
    ramp_out = y[start - fade : start, 0] / plain[start - fade : start, 0]
    ramp_in = y[end : end + fade, 0] / plain[end : end + fade, 0]
    assert np.all(np.diff(ramp_out) < 0) and np.all(np.diff(ramp_in) > 0)
    assert 0 < ramp_out.min() and ramp_out.max() < 1 and 0 < ramp_in.min() and ramp_in.max() < 1
    # A gap at the crop's edge: its fade is cut, nothing is written out of bounds.
    z = augment.silence_span(x.copy(), 0, 100, fade)
    assert np.all(z[:100] == 0) and np.all(z[100 + fade :] == x[100 + fade :])
    z = augment.silence_span(x.copy(), len(x) - 100, 100, fade)
    assert np.all(z[-100:] == 0) and np.all(z[: -100 - fade] == x[: -100 - fade])
    # gap_depth_db: the same span attenuated by that much, the fades between 1 and that gain.
    with cfg.unlocked():
        cfg.gap_depth_db = -40.0
    d = augment.augment(x, np.random.default_rng(3), cfg, SR)
    np.testing.assert_allclose(d[start:end], plain[start:end] * 0.01, rtol=1e-5)
    np.testing.assert_array_equal(d[: start - fade], plain[: start - fade])
    np.testing.assert_array_equal(d[end + fade :], plain[end + fade :])
    ramp_out = d[start - fade : start, 0] / plain[start - fade : start, 0]
    ramp_in = d[end : end + fade, 0] / plain[end : end + fade, 0]
    assert np.all(np.diff(ramp_out) < 0) and np.all(np.diff(ramp_in) > 0)
    assert 0.01 < ramp_out.min() and ramp_out.max() < 1 and 0.01 < ramp_in.min()
    assert augment.check_config(cfg) is None
    with cfg.unlocked():
        cfg.gap_prob, cfg.gap_depth_db = 0.0, None
    np.testing.assert_array_equal(augment.augment(x, np.random.default_rng(3), cfg, SR), plain)
    assert augment.check_config(cfg) is None


@pytest.mark.parametrize(
    "key, value, words",
    [("gap_prob", "1.5", "a probability"), ("gap_fraction", "(0.5, 1.0)", "0 < low <= high < 1"),
     ("gap_fraction", "(0.4, 0.2)", "0 < low <= high < 1"), ("gap_fade_ms", "-1.0", "0 or more"),
     ("gap_depth_db", "6.0", "a level in dB below 0"), ("mono_prob", "-0.1", "a probability"),
     ("swap_prob", "2.0", "a probability")],
)  # fmt: skip
def test_bad_gap_settings_are_config_errors(tmp_path, key, value, words):
    root = str(tmp_path / "music")
    write_good(root, n=2)
    c = config_for(f"folder:{root}", **{f"data.augment.{key}": value})
    with pytest.raises(ConfigError, match=f"data.augment.{key}=.*{re.escape(words)}"):
        pipeline.build_train_data(c, SR, SEG)


def test_synthetic_source_is_default_and_batches(tmp_path):
    c = config_for("synthetic")
    b = next(iter(pipeline.build_train_data(c, SR, SEG).dataset))
    assert b.shape == (4, SEG) and np.isfinite(b).all() and np.abs(b).max() > 0.01


def test_remote_paths_read_through_epath_file_objects(tmp_path, monkeypatch):
    path = str(tmp_path / "a.flac")
    sf.write(path, tone(500, 1.0, 48000, channels=2), 48000)
    local = audio.read_window(path, 3000, 1000, SR, 1, audio.probe(path))
    monkeypatch.setattr(audio, "is_remote", lambda p: True)  # the gs:// branch, on a local file
    info = audio.probe(path)
    assert info == audio.AudioInfo(48000, 48000, 2)
    np.testing.assert_array_equal(audio.read_window(path, 3000, 1000, SR, 1, info), local)
    with pytest.raises(audio.BadAudio):
        audio.probe(str(tmp_path / "missing.wav"))


def test_crops_are_normalized_before_augmentation(tmp_path):
    """Every crop reaches the model at `data.normalize_db` whatever its file's level (DAC's
    recipe); gain augmentation then moves it by its draw; off, levels are the files'."""
    from jax_codec import levels

    root = str(tmp_path / "music")
    os.makedirs(root)
    for i, lvl in enumerate([0.5, 0.05, 0.005]):
        sf.write(f"{root}/s{i}.wav", tone(300 + 50 * i, 1.0, SR, level=lvl, seed=i) * 0.99, SR)
    c = config_for(f"folder:{root}", **{"data.augment.enabled": "False"})
    rows = np.concatenate(batches(pipeline.build_train_data(c, SR, SEG), 3))
    got = [levels.level_db(r, SR) for r in rows]
    np.testing.assert_allclose(got, c.data.normalize_db, atol=1e-3)
    e = pipeline.eval_batch(c, SR, 2048, 3)
    np.testing.assert_allclose([levels.level_db(r, SR) for r in e], c.data.normalize_db, atol=1e-3)
    fixed = {"data.augment.gain_db": (-6.0, -6.0), "data.augment.eq_prob": "0.0"}
    c = config_for(f"folder:{root}", **fixed)
    rows = np.concatenate(batches(pipeline.build_train_data(c, SR, SEG), 2))
    np.testing.assert_allclose([levels.level_db(r, SR) for r in rows], -24.0, atol=1e-3)
    c = config_for(f"folder:{root}", **{"data.augment.enabled": "False", "data.normalize": "False"})
    rows = np.concatenate(batches(pipeline.build_train_data(c, SR, SEG), 3))
    spread = np.ptp([levels.level_db(r, SR) for r in rows])
    assert spread > 30  # the files' own levels, 40 dB apart
