"""benchmarks/codebook_gain.py: each n_q against one codebook, file by file, in each metric's
sense; the first codec against the others; clear exits for bad specs."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import codebook_gain  # noqa: E402


def row(codec, k, file, **metrics):
    return {"codec": codec, "n_quantizers": k, "actual_kbps": 0.5 * k, "file": file, **metrics}


ROWS = [
    # file a: two excerpts at one codebook (mean mel 3.0), one at two codebooks.
    row("ours", 1, "a", mel_distance=2.0, visqol=2.0),
    row("ours", 1, "a", mel_distance=4.0, visqol=2.0),
    row("ours", 2, "a", mel_distance=2.5, visqol=2.5),
    row("ours", 2, "a", mel_distance=2.5, visqol=2.5),
    row("ours", 1, "b", mel_distance=2.0, visqol=3.0),
    row("ours", 2, "b", mel_distance=2.5, visqol=2.8),
    row("other", 1, "a", mel_distance=3.5, visqol=2.0),
    row("other", 1, "b", mel_distance=2.5, visqol=3.0),
    row("other", 2, "a", mel_distance=3.5, visqol=2.0),
    row("other", 2, "b", mel_distance=2.5, visqol=3.0),
]


def test_gain_against_one_codebook_and_against_the_first(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(ROWS))
    out = codebook_gain.main(
        [f"{path}=ours", f"{path}=other", "--output", str(tmp_path / "g.json")]
    )
    (g,) = out["gain"]["ours"]
    assert g["n_quantizers"] == 2 and g["kbps"] == 1.0
    # mel: a 3.0 -> 2.5 (better), b 2.0 -> 2.5 (worse); ViSQOL a +0.5 (better), b -0.2.
    assert g["mel_distance"]["mean_diff"] == pytest.approx(0.0)
    assert g["mel_distance"]["more_better_on"] == 1
    assert g["visqol"]["mean_diff"] == pytest.approx(0.15)
    assert g["visqol"]["more_better_on"] == 1
    assert "mel_distance_side" not in g  # a mono evaluation has no side
    # The first against the other, at each n_q: mel a 3.0 - 3.5, b 2.0 - 2.5 at one codebook.
    one, two = out["against_first"]["other"]
    assert one["metrics"]["mel_distance"]["mean_diff"] == pytest.approx(-0.5)
    assert one["metrics"]["mel_distance"]["a_better_on"] == 2
    assert two["metrics"]["mel_distance"]["mean_diff"] == pytest.approx(-0.5)
    # ... and at each n_q against the other at its most codebooks (two, 1.0 kbps): ViSQOL at
    # one codebook a 2.0 - 2.0, b 3.0 - 3.0; at two a 2.5 - 2.0, b 2.8 - 3.0.
    one, two = out["against_best"]["other"]
    assert [p["b"]["n_quantizers"] for p in (one, two)] == [2, 2]
    assert (one["a"]["kbps"], one["b"]["kbps"]) == (0.5, 1.0)
    assert one["metrics"]["visqol"]["mean_diff"] == pytest.approx(0.0)
    assert two["metrics"]["visqol"]["mean_diff"] == pytest.approx(0.15)
    assert two["metrics"]["visqol"]["a_better_on"] == 1
    assert json.loads((tmp_path / "g.json").read_text())["gain"]["ours"][0]["n_quantizers"] == 2
    assert "n_q vs 1" in capsys.readouterr().out


def test_bad_specs_exit_with_a_message(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(ROWS))
    with pytest.raises(SystemExit, match="has no rows of codec 'nope'; it has"):
        codebook_gain.main([f"{path}=nope"])
    with pytest.raises(SystemExit, match="no such file"):
        codebook_gain.main([f"{tmp_path / 'missing.json'}=ours"])
    with pytest.raises(SystemExit, match="is not RESULTS_JSON=CODEC"):
        codebook_gain.main([str(path)])
    path.write_text(json.dumps([r for r in ROWS if r["n_quantizers"] == 2]))
    with pytest.raises(SystemExit, match="no rows at one codebook"):
        codebook_gain.main([f"{path}=ours"])


def test_the_same_label_in_two_evaluations_is_numbered(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(ROWS))
    b.write_text(json.dumps(ROWS))
    out = codebook_gain.main([f"{a}=ours", f"{b}=ours"])
    assert set(out["gain"]) == {"ours#0", "ours#1"}
    (one, two) = out["against_first"]["ours#1"]
    assert one["metrics"]["mel_distance"]["mean_diff"] == pytest.approx(0.0)
