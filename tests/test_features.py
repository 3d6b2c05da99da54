"""vlsa.features against independent references: a numpy spectrogram, pure tones, the tokenizer's known ids."""
import os, subprocess, sys

import numpy as np
import pytest
import torch

from vlsa.config import AudioConfig, get_config
from vlsa.features import (log_freq_centres, log_freq_spectrogram, spectrogram_times, tokenize, video_transform)
from vlsa.media import read_clip, write_media


def numpy_log_freq_spectrogram(wave, cfg):
    "The definition in the notebook, written again with numpy only, in float64, the slow way."
    n_fft, hop = cfg.n_fft, cfg.hop_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)          # periodic Hann
    padded = np.pad(wave.astype(np.float64), n_fft // 2)                         # centred, zero padding
    n = 1 + len(wave) // hop
    mag = np.stack([np.abs(np.fft.rfft(padded[i * hop:i * hop + n_fft] * window)) for i in range(n)], axis=1)
    # frequency: average of the linearly interpolated magnitude over each band (fine trapezoid)
    c = cfg.f_min * (cfg.sample_rate / 2 / cfg.f_min) ** (np.arange(cfg.freq_bins) / (cfg.freq_bins - 1))
    r = np.sqrt(c[1] / c[0])
    edges = np.concatenate([[c[0] / r], np.sqrt(c[:-1] * c[1:]), [min(c[-1] * r, cfg.sample_rate / 2)]])
    lin = np.arange(mag.shape[0]) * cfg.sample_rate / n_fft
    out = np.zeros((cfg.freq_bins, n))
    for k in range(cfg.freq_bins):
        f = np.linspace(edges[k], edges[k + 1], 4001)
        f = np.union1d(f, lin[(lin > edges[k]) & (lin < edges[k + 1])])        # knots included: trapezoid is exact
        vals = np.stack([np.interp(f, lin, mag[:, t]) for t in range(n)], axis=1)
        out[k] = np.trapezoid(vals, f, axis=0) / (edges[k + 1] - edges[k])
    # time: output frame j averages input frames over [j n / T', (j + 1) n / T')
    T = cfg.time_frames
    res = np.zeros((cfg.freq_bins, T))
    for j in range(T):
        a, b = j * n / T, (j + 1) * n / T
        for i in range(int(np.floor(a)), min(n, int(np.ceil(b)))):
            res[:, j] += out[:, i] * max(0.0, min(b, i + 1) - max(a, i))
        res[:, j] /= b - a
    return np.log(res + 1e-6)


@pytest.mark.parametrize('preset', ['tiny', 'base'])
def test_spectrogram_equals_independent_numpy_implementation(preset):
    cfg = get_config(preset).model.audio
    rng = np.random.default_rng(0)
    t = np.arange(cfg.num_samples // 4) / cfg.sample_rate        # a shorter window keeps the reference quick
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = log_freq_spectrogram(wave, cfg.sample_rate, cfg)[0].double().numpy()
    ref = numpy_log_freq_spectrogram(wave, cfg)
    assert ours.shape == ref.shape == cfg.spec_shape
    np.testing.assert_allclose(np.exp(ours), np.exp(ref), rtol=1e-4, atol=1e-6)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize('freq', [100.0, 237.0, 440.0, 1000.0, 2222.0, 3500.0, 5000.0])
def test_pure_tone_peaks_in_the_nearest_bin(freq):
    cfg = AudioConfig()
    t = np.arange(cfg.num_samples) / cfg.sample_rate
    spec = log_freq_spectrogram(np.sin(2 * np.pi * freq * t).astype(np.float32), cfg.sample_rate, cfg)
    centres = log_freq_centres(cfg)
    peak = int(spec[0, :, 10:-10].mean(1).argmax())
    step = cfg.sample_rate / cfg.n_fft
    band = centres[1] / centres[0]
    if centres[peak] * (band - 1) > step:   # bands wider than an STFT bin: exactly the nearest centre
        assert peak == int(np.argmin(np.abs(np.log(centres / freq))))
    else:                                   # finer than the STFT: nearest within its resolution (half a bin)
        assert abs(centres[peak] - freq) <= step / 2


def test_resampling_from_other_rates_gives_the_same_picture():
    cfg = AudioConfig()
    t44 = np.arange(4 * 44_100) / 44_100
    t11 = np.arange(4 * 11_025) / 11_025
    a = log_freq_spectrogram(np.sin(2 * np.pi * 1000 * t44).astype(np.float32), 44_100, cfg)
    b = log_freq_spectrogram(np.sin(2 * np.pi * 1000 * t11).astype(np.float32), 11_025, cfg)
    assert int(a[0].mean(1).argmax()) == int(b[0].mean(1).argmax())


def test_click_onset_in_the_spectrogram_matches_the_flash(tmp_path):
    "Media and features together: the flash frame and the click's spectrogram onset within one hop."
    fps, sr = 16, 44_100
    frames = np.zeros((64, 32, 32, 3), np.uint8); frames[37] = 255
    wave = 0.001 * np.random.default_rng(0).standard_normal(4 * sr).astype(np.float32)
    wave[int(37 / fps * sr):int(37 / fps * sr) + 441] += 0.8
    clip = read_clip(write_media(tmp_path / 'sync.mp4', frames, fps, wave, sr), num_frames=64)
    flash = clip.frame_times[clip.frames.mean((1, 2, 3)).argmax()]
    cfg = AudioConfig(time_frames=512)                             # 4 s in 512 frames: finer than a hop
    spec = log_freq_spectrogram(clip.audio, clip.sample_rate, cfg)[0].mean(0).numpy()
    times = clip.audio_start + spectrogram_times(len(clip.audio), cfg)
    # the 93 ms window sees the 10 ms click from 46 ms before it: its centre is where the energy peaks
    click = times[spec.argmax()]
    assert abs(click - flash) <= cfg.hop_length / cfg.sample_rate, (click, flash)


def test_tokenizer_is_offline_and_gives_bert_base_uncased_ids():
    code = ("from vlsa.features import tokenize; ids, m = tokenize(['The quick brown fox jumps over the lazy dog.', "
            "'Hello world!', 'A bell rings twice; a DRUM plays.']); print(ids.tolist()); print(m.sum(1).tolist())")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HOME': '/nonexistent/hf'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True).stdout
    ids, lengths = (eval(line) for line in out.strip().splitlines())
    assert ids[0] == [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]
    assert ids[1][:5] == [101, 7592, 2088, 999, 102]
    assert ids[2][:11] == [101, 1037, 4330, 7635, 3807, 1025, 1037, 6943, 3248, 1012, 102]
    assert lengths == [12, 5, 11]


def test_long_text_is_truncated_to_max_len():
    ids, mask = tokenize(['word ' * 100])
    assert ids.shape == (1, 40) and ids[0, -1].item() == 102


def test_video_transform_shapes_and_normalization():
    frames = np.full((8, 120, 160, 3), 255, np.uint8)
    v = video_transform(frames, 112)
    assert v.shape == (8, 3, 112, 112)
    torch.testing.assert_close(v[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))
