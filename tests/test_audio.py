import numpy as np
import pytest

from conftest import tone, write_wav
from cltm.data.audio import AudioError, AudioStore, load_audio, trim_silence
from cltm.data.prepare import prepare_language
from cltm.data.corpora import read_common_voice


def test_load_audio_resamples_and_downmixes(tmp_path):
    stereo = np.stack([tone(440, 2.0, 48000), tone(440, 2.0, 48000) * 0.5], axis=1)
    write_wav(tmp_path / "s.mp3", stereo, 48000, "MP3")
    write_wav(tmp_path / "w.wav", tone(300, 1.5, 22050), 22050)
    mp3 = load_audio(tmp_path / "s.mp3", 16000)
    assert mp3.ndim == 1 and mp3.dtype == np.float32
    assert abs(mp3.size - 32000) < 2000  # MP3 adds encoder padding
    wav = load_audio(tmp_path / "w.wav", 16000)
    assert wav.size == 24000
    # the 300 Hz tone survives resampling
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16000 / wav.size - 300) < 2


def test_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="broken.mp3"):
        load_audio(bad)


def test_prepare_and_store_round_trip(demo_release, tmp_path):
    m = read_common_voice(demo_release, "en")
    wanted = m["utt_id"].tolist()[:10]
    index = prepare_language(m, wanted, tmp_path / "en.npy", tmp_path / "en.tsv", log=lambda s: None)
    store = AudioStore(tmp_path / "en.npy", tmp_path / "en.tsv")
    assert list(store.index.index) == sorted(wanted) and len(index) == 10
    u = wanted[3]
    direct = load_audio(m.set_index("utt_id").loc[u, "path"], 16000)
    assert np.abs(store[u] - direct).max() < 1e-4  # int16 storage
    assert store.meta(u)["speaker"] == m.set_index("utt_id").loc[u, "speaker"]
    assert not list(tmp_path.glob("*.part"))


def test_trim_silence_cuts_quiet_edges():
    sr = 16000
    speech = tone(200, 1.0, sr)
    wave = np.concatenate([np.zeros(sr // 2, np.float32) + 1e-4, speech, np.zeros(sr // 2, np.float32) + 1e-4])
    trimmed = trim_silence(wave, 20)
    assert abs(trimmed.size - sr) < 800
    assert trim_silence(wave, None).size == wave.size
