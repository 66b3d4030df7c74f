"""The `tfds:` source on a toy TFDS dataset built in ArrayRecord format (needs TensorFlow).

The spec parser and the message for a missing TensorFlow are tested without it.
"""

import io
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from jax_codec.data import audio
from jax_codec.data.tfds_source import TF_MISSING, TfdsClips, needs_tensorflow, parse_tfds_spec

SR = 16000
LENGTHS = (1600, 2000, 2400, 2800, 3200, 0)  # the last example is empty
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def signal(i: int, n: int | None = None, channels: int = 1) -> np.ndarray:
    """int16 ``[n, channels]`` test tone of example `i` (channel c at a different pitch)."""
    t = np.arange(LENGTHS[i] if n is None else n)[:, None] / SR
    f = 200.0 + 50.0 * i + 300.0 * np.arange(channels)
    return np.round(8000 * np.sin(2 * np.pi * f * t)).astype(np.int16)


# --------------------------------------------------------------------------- without TensorFlow


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("nsynth/train", ("nsynth", "train", None)),
        ("nsynth/train:audio", ("nsynth", "train", "audio")),
        ("nsynth/gansynth_subset/train", ("nsynth/gansynth_subset", "train", None)),
        ("nsynth/full:2.3.3/valid:audio", ("nsynth/full:2.3.3", "valid", "audio")),
        ("my_set:1.0.0/train[:90%]", ("my_set:1.0.0", "train[:90%]", None)),
        ("a/b/train[10:20]+test:meta/audio", ("a/b", "train[10:20]+test", "meta/audio")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_tfds_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "nsynth", "nsynth/", "/train", "a/b/c/d", "nsynth/train:", "n/train:a:b", "n s/x"]
)
def test_parse_spec_rejects(spec):
    with pytest.raises(ValueError, match=r"NAME\[/CONFIG\]\[:VERSION\]/SPLIT\[:FEATURE\]"):
        parse_tfds_spec(spec)


def test_needs_tensorflow():
    missing = ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    assert needs_tensorflow(missing)
    try:  # how tfds re-raises it while building a dataset
        try:
            raise missing
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f'Failed to construct dataset "x": {e}') from e
    except ModuleNotFoundError as wrapped:
        assert needs_tensorflow(wrapped)
    assert not needs_tensorflow(ModuleNotFoundError("No module named 'pydub'", name="pydub"))
    assert not needs_tensorflow(ValueError("tensorflow"))


def test_missing_tensorflow_message(tmp_path):
    """With TensorFlow unimportable, a dataset with an Audio feature gives the install hint."""
    script = textwrap.dedent(
        """
        import importlib.abc, importlib.machinery, sys

        class NoTF(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name.partition(".")[0] == "tensorflow":
                    return importlib.machinery.ModuleSpec(name, self)

            def create_module(self, spec):
                raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

            def exec_module(self, module):
                pass

        sys.meta_path.insert(0, NoTF())
        import numpy as np
        import tensorflow_datasets as tfds
        from jax_codec.data.tfds_source import TfdsClips

        class NoTfToy(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                audio = tfds.features.Audio(shape=(None,), dtype=np.int16, sample_rate=16000)
                return tfds.core.DatasetInfo(
                    builder=self, features=tfds.features.FeaturesDict({"audio": audio})
                )

            def _split_generators(self, dl_manager):
                return {}

            def _generate_examples(self):
                yield from ()

        try:
            TfdsClips("no_tf_toy/train", 16000, 1, data_dir=sys.argv[1])
        except RuntimeError as e:
            print("ERROR:", e)
        assert "tensorflow" not in sys.modules
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert f"ERROR: {TF_MISSING}\n" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- with TensorFlow


@pytest.fixture(scope="session")
def toy():
    """The toy dataset's builder: configs ``mono`` and ``many``.

    ``mono``: ``audio`` (int16, variable length, the last example empty) and ``id``.
    ``many``: ``audio``, ``meta/stereo`` (two channels), ``fixed`` (always 1600 samples),
    ``encoded`` (a FLAC file, decoded on read; not a FLAC file in the last example), ``norate``
    (no sample rate declared) and ``id``. Both have splits train and test.
    """
    pytest.importorskip("tensorflow")
    import tensorflow_datasets as tfds

    def flac(x: np.ndarray) -> io.BytesIO:
        buf = io.BytesIO()
        sf.write(buf, x, SR, format="FLAC", subtype="PCM_16")
        buf.seek(0)
        return buf

    class JcToy(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="mono"),
            tfds.core.BuilderConfig(name="many"),
        ]

        def _info(self):
            def wave(shape):
                return tfds.features.Audio(shape=shape, dtype=np.int16, sample_rate=SR)

            features = {"audio": wave((None,)), "id": np.int64}
            if self.builder_config.name == "many":
                features["meta"] = {"stereo": wave((None, 2)), "label": np.int64}
                features["fixed"] = wave((1600,))
                features["norate"] = tfds.features.Audio(dtype=np.int16)
                features["encoded"] = tfds.features.Audio(
                    file_format="flac", lazy_decode=True, dtype=np.int16, sample_rate=SR
                )
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(features),
                disable_shuffling=True,  # example i is the i-th generated
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(), "test": self._generate_examples()}

        def _generate_examples(self):
            many = self.builder_config.name == "many"
            for i, n in enumerate(LENGTHS):
                ex = {"audio": signal(i)[:, 0], "id": i}
                if many:
                    ex["meta"] = {"stereo": signal(i, channels=2), "label": i}
                    ex["fixed"] = signal(i, 1600)[:, 0]
                    ex["encoded"] = flac(signal(i)) if n else io.BytesIO(b"not a FLAC file")
                    ex["norate"] = signal(i)[:, 0]
                yield i, ex

    return JcToy


@pytest.fixture(scope="session")
def data_dir(toy, tmp_path_factory):
    """A TFDS data_dir holding ``jc_toy/mono`` and ``jc_toy/many`` in ArrayRecord format."""
    root = str(tmp_path_factory.mktemp("tfds"))
    for config in ("mono", "many"):
        toy(config=config, data_dir=root, file_format="array_record").download_and_prepare()
    return root


def clips_for(spec, data_dir, sample_rate=SR, channels=1, **kw):
    return TfdsClips(spec, sample_rate, channels, data_dir=data_dir, **kw)


def test_reads_the_signal(data_dir):
    clips = clips_for("jc_toy/mono/train", data_dir)
    assert len(clips) == 5 and clips.report.skipped == {
        "no audio frames (zero length)": ["example 5"]
    }
    np.testing.assert_array_equal(clips.all_frames(), LENGTHS[:5])
    for i in range(5):
        np.testing.assert_array_equal(clips.read(i, 0, 10**6), signal(i) / 32768.0)
    x = clips.read(2, 1000, 500)
    assert x.dtype == np.float32 and x.shape == (500, 1)
    np.testing.assert_array_equal(x, signal(2)[1000:1500] / 32768.0)
    assert clips.read(0, 1500, 500).shape == (100, 1)  # short at the end of the clip
    assert clips.read(0, 5000, 500).shape == (0, 1)
    assert "tfds:jc_toy/mono/train" in clips.report.summary()


def test_resamples_and_converts_channels(data_dir):
    clips = clips_for("jc_toy/mono/test:audio", data_dir, sample_rate=24000, channels=2)
    want = audio.resample(signal(3) / np.float32(32768), SR, 24000)
    assert abs(clips.frames(3) - 1.5 * LENGTHS[3]) <= 1
    np.testing.assert_allclose(clips.read(3, 0, 10**6), np.repeat(want, 2, axis=1), atol=1e-6)
    assert clips.read(3, 0, 10**6).shape[0] == clips.frames(3)
    assert any("16000 Hz -> 24000 Hz" in k for k in clips.report.converted)

    stereo = clips_for("jc_toy/many/train:meta/stereo", data_dir)
    both = signal(1, channels=2) / 32768.0
    np.testing.assert_allclose(stereo.read(1, 0, 10**6), both.mean(1, keepdims=True), atol=1e-7)
    assert stereo.report.converted["channel-converted (2 -> 1)"] == 5
    np.testing.assert_array_equal(
        clips_for("jc_toy/many/train:meta/stereo", data_dir, channels=2).read(1, 0, 10**6), both
    )


def test_fixed_shape_and_encoded_features(data_dir):
    fixed = clips_for("jc_toy/many/train:fixed", data_dir, scan_limit=0)
    np.testing.assert_array_equal(fixed.all_frames(), [1600] * 6)  # from the shape, no scan
    np.testing.assert_array_equal(fixed.read(2, 0, 10**6), signal(2, 1600) / 32768.0)
    encoded = clips_for("jc_toy/many/train:encoded", data_dir)
    np.testing.assert_array_equal(encoded.all_frames(), LENGTHS[:5])
    np.testing.assert_allclose(encoded.read(3, 0, 10**6), signal(3) / 32768.0, atol=1e-7)
    assert list(encoded.report.skipped) == ["corrupt (decoding failed)"]
    unscanned = clips_for("jc_toy/many/train:encoded", data_dir, scan_limit=0)
    assert len(unscanned) == 6
    with pytest.raises(audio.BadAudio, match="corrupt"):
        unscanned.read(5, 0, 100)


def test_sample_rate_override(data_dir):
    with pytest.raises(ValueError, match="declares no sample rate for its audio feature 'norate'"):
        clips_for("jc_toy/many/train:norate", data_dir)
    clips = clips_for("jc_toy/many/train:norate", data_dir, source_sample_rate=8000)
    assert clips.frames(1) == 2 * LENGTHS[1]


def test_estimated_lengths(data_dir):
    """Only some examples scanned: the rest get the median, and reads stop at the real end."""
    clips = clips_for("jc_toy/mono/train", data_dir, scan_limit=3)  # scans 0, 2 (and empty 5)
    np.testing.assert_array_equal(clips.all_frames(), [1600, 2000, 2400, 2000, 2000])
    assert clips.report.converted["clips with estimated length (median of 2 scanned examples)"] == 3
    assert clips.read(1, 1900, 1000).shape == (100, 1)  # 2000 long, as estimated
    assert clips.read(3, 2200, 1000).shape == (600, 1)  # 2800 long, estimated 2000
    assert clips.read(1, 2500, 1000).shape == (0, 1)
    assert clips.frames(3) == 2000  # fixed at start: crops depend only on (seed, index)
    copy = pickle.loads(pickle.dumps(clips))  # what grain worker processes get
    np.testing.assert_array_equal(copy.read(4, 0, 10**6), signal(4) / 32768.0)


def test_feature_errors(data_dir):
    with pytest.raises(
        ValueError, match=r"several Audio features \(audio, encoded, fixed, meta/stereo, norate\)"
    ):
        clips_for("jc_toy/many/train", data_dir)
    with pytest.raises(ValueError, match=r"no feature 'sound'; its features: audio \(Audio\)"):
        clips_for("jc_toy/many/train:sound", data_dir)
    with pytest.raises(ValueError, match=r"'meta/label' .* is a Tensor, not Audio"):
        clips_for("jc_toy/many/train:meta/label", data_dir)


def test_dataset_errors(toy, data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found in .*tfds build no_such_set/x"):
        clips_for("no_such_set/x/train", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--file_format=array_record"):
        clips_for("jc_toy/mono/train", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"'nsynth' is not prepared in .*tfds build nsynth"):
        clips_for("nsynth/train", str(tmp_path))  # in the TFDS catalog, not built here
    tfrecord = str(tmp_path / "tfrecord")
    toy(config="mono", data_dir=tfrecord, file_format="tfrecord").download_and_prepare()
    with pytest.raises(FileNotFoundError, match="prepared as tfrecord, but .* needs random access"):
        clips_for("jc_toy/mono/train", tfrecord)
    with pytest.raises(ValueError, match=r"bad split 'valid' .* \(its splits: test, train\)"):
        clips_for("jc_toy/mono/valid", data_dir)
    with pytest.raises(ValueError, match="bad tfds source"):
        clips_for("jc_toy", data_dir)


def test_in_the_pipeline(data_dir):
    from jax_codec.config import ConfigError, apply_overrides, load_config
    from jax_codec.data import pipeline

    def config(source):
        c = load_config("configs/base.py:runlocal")
        values = {"data.source": source, "data.tfds_data_dir": data_dir, "data.num_threads": "0"}
        apply_overrides(c, {**values, "train.batch_size": "4"})
        return c

    data = pipeline.build_train_data(config("tfds:jc_toy/mono/train"), SR, 800)
    batch = next(iter(data.dataset))
    assert batch.shape == (4, 800) and np.isfinite(batch).all() and np.abs(batch).max() > 0.1
    with pytest.raises(ConfigError, match="not found in"):
        pipeline.build_train_data(config("tfds:no_such_set/train"), SR, 800)
