"""benchmarks/stereo_segments.py: mid/side levels and mel distances per time span."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import stereo_segments  # noqa: E402

SR = 16000


def stereo(seconds=2.0, side=0.1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    mid = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    s = side * np.sin(2 * np.pi * 1000 * t)
    return np.stack([mid + s, mid - s])


def test_span_metrics_levels_and_distances():
    ref = stereo()
    m = stereo_segments.span_metrics(ref, ref, SR, 0.0, 1.0)
    assert m["mel_mid"] == pytest.approx(0.0) and m["mel_side"] == pytest.approx(0.0)
    assert m["ref_side_dbfs"] == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.1)
    # A decoded pair with identical channels has no side; the side's distance is then large.
    mono = np.repeat(ref.mean(axis=0, keepdims=True), 2, axis=0)
    m = stereo_segments.span_metrics(ref, mono, SR, 0.5, 1.5)
    assert m["side_dbfs"] == pytest.approx(-240.0) and m["mel_side"] > 3.0
    assert m["mel_mid"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="past the end"):
        stereo_segments.span_metrics(ref, ref, SR, 1.5, 3.0)


def test_command_writes_one_row_per_file_and_span(tmp_path, capsys):
    ref = stereo()
    sf.write(tmp_path / "ref.wav", ref.T, SR, subtype="FLOAT")
    sf.write(tmp_path / "a.wav", (0.5 * ref).T, SR, subtype="FLOAT")
    out = tmp_path / "out.json"
    stereo_segments.main(
        [str(tmp_path / "ref.wav"), f"half={tmp_path / 'a.wav'}", "--spans=0-1,1-2",
         f"--output={out}"]
    )  # fmt: skip
    rows = json.load(open(out))["results"]["half"]
    assert [r["span_s"] for r in rows] == [[0.0, 1.0], [1.0, 2.0]]
    assert rows[0]["mid_dbfs"] == pytest.approx(rows[0]["ref_mid_dbfs"] - 6.02, abs=0.05)
    assert "half 0-1 s" in capsys.readouterr().out
    for bad in ("1-0", "x-2"):
        with pytest.raises(SystemExit, match="--spans"):
            stereo_segments.main([str(tmp_path / "ref.wav"), "a=b", f"--spans={bad}"])
    sf.write(tmp_path / "mono.wav", ref[0], SR)
    with pytest.raises(SystemExit, match="stereo file is needed"):
        stereo_segments.main([str(tmp_path / "mono.wav"), "a=b", "--spans=0-1"])
