"""vlsa.media on real files that these tests encode with PyAV: containers, codecs, channel layouts, bad files."""
import numpy as np
import pytest
import soundfile

from vlsa.media import MediaError, NoAudioTrack, read_clip, write_media

FPS, SECONDS = 16, 2.0


def scene(size=(48, 64)):
    "Frames whose brightness encodes the frame index, so a decoded frame tells which one it is."
    n = int(FPS * SECONDS)
    frames = np.zeros((n, *size, 3), np.uint8)
    for i in range(n): frames[i] = 40 + 5 * i
    return frames


def tone(sr, channels=1, seconds=SECONDS, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


FORMATS = {  # name: (file, video codec, audio codec, sample rate, channels, extra)
    'h264_aac.mp4': ('libx264', 'aac', 44_100, 1, {}),
    'vp9_opus.webm': ('libvpx-vp9', 'libopus', 48_000, 2, {}),
    'h264_aac.mkv': ('libx264', 'aac', 22_050, 2, {}),
    'surround_48k.mp4': ('libx264', 'aac', 48_000, 6, {}),
    'mpeg4_mp3.avi': ('mpeg4', 'libmp3lame', 44_100, 2, {'options': {'qmin': '1', 'qmax': '2'}}),
    'h264_aac.mov': ('libx264', 'aac', 32_000, 1, {}),
    'flv1_mp3.flv': ('flv', 'libmp3lame', 22_050, 1, {}),
    'wmv2_wma.wmv': ('wmv2', 'wmav2', 44_100, 2, {'format': 'asf'}),
}


@pytest.fixture(scope='module')
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp('media')
    files = {}
    for name, (vc, ac, sr, ch, extra) in FORMATS.items():
        files[name] = write_media(root / name, scene(), FPS, tone(sr, ch), sr, video_codec=vc, audio_codec=ac,
                                  **extra)
    files['no_audio.mp4'] = write_media(root / 'no_audio.mp4', scene(), FPS)
    files['silent.mp4'] = write_media(root / 'silent.mp4', scene(), FPS, np.zeros((1, int(44_100 * SECONDS)), np.float32), 44_100)
    whole = files['h264_aac.mp4'].read_bytes()
    (root / 'truncated.mp4').write_bytes(whole[: len(whole) // 3])
    (root / 'empty.mp4').write_bytes(b'')
    (root / 'text.mp4').write_text('this is a shopping list, not a video\n' * 20)
    files.update({k: root / k for k in ('truncated.mp4', 'empty.mp4', 'text.mp4')})
    return files


@pytest.mark.parametrize('name', list(FORMATS))
def test_containers_and_codecs_decode_to_the_right_shapes(media, name):
    clip = read_clip(media[name], num_frames=8)
    assert clip.frames.shape == (8, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.has_audio and clip.sample_rate == 11_025 and clip.audio.dtype == np.float32
    assert clip.audio.ndim == 1 and abs(len(clip.audio) - SECONDS * 11_025) <= 11_025 * 0.1
    # frames are spread over the clip: centres of 8 equal segments; brightness says which frame came out, and it
    # is the one on screen at the reported time (lossy codecs blur brightness, and the AVI and ASF writers shift
    # timestamps by a frame or so: hence a tolerance of 1.5 frames)
    np.testing.assert_allclose(clip.frame_times, np.arange(8) * 0.25 + 0.0625, atol=1.5 / FPS)
    index = (clip.frames.mean((1, 2, 3)) - 40) / 5
    assert np.all(np.diff(index) > 2), index
    np.testing.assert_allclose(index, clip.frame_times * FPS, atol=1.5)
    # the tone is there: audio carries energy at 440 Hz (or its harmonics across the downmix)
    assert np.sqrt(np.mean(clip.audio ** 2)) > 0.01


def test_six_channels_at_48k_are_downmixed_to_mono_and_resampled(media):
    clip = read_clip(media['surround_48k.mp4'], num_frames=4)
    spectrum = np.abs(np.fft.rfft(clip.audio[: 11_025]))
    freqs = np.fft.rfftfreq(11_025, 1 / 11_025)
    peaks = freqs[np.argsort(spectrum)[-6:]]
    # the channels carried 440, 880, ..., 2640 Hz: the mono mix holds several of them
    assert sum(np.any(np.abs(peaks - 440 * k) < 3) for k in range(1, 7)) >= 3


@pytest.mark.parametrize('name', ['h264_aac.mp4', 'vp9_opus.webm', 'mpeg4_mp3.avi', 'wmv2_wma.wmv'])
def test_both_video_decoders_agree(media, name):
    a = read_clip(media[name], num_frames=8, decoders=('decord',))
    b = read_clip(media[name], num_frames=8, decoders=('pyav',))
    assert (a.decoder, b.decoder) == ('decord+pyav', 'pyav')
    if name.endswith('.wmv'):   # decord is wrong on ASF: read_clip routes it to PyAV by default
        assert read_clip(media[name], num_frames=8).decoder == 'pyav'
        return
    np.testing.assert_allclose(a.frame_times, b.frame_times, atol=1e-3)
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2


@pytest.mark.parametrize('codec, box, vcodec', [('aac', 'mp4', 'libx264'), ('libopus', 'webm', 'libvpx-vp9'),
                                                ('libmp3lame', 'mkv', 'libx264')])
def test_audio_is_sample_aligned_with_the_original(tmp_path, codec, box, vcodec):
    "White noise through each codec: the decoded audio lines up with the original to the sample (at 11,025 Hz)."
    import torch, torchaudio
    noise = (0.2 * np.random.default_rng(0).standard_normal(2 * 48_000)).astype(np.float32)
    path = write_media(tmp_path / f'noise.{box}', np.zeros((32, 32, 32, 3), np.uint8), 16, noise, 48_000, vcodec, codec)
    truth = torchaudio.functional.resample(torch.from_numpy(noise), 48_000, 11_025).numpy()[2000:8000]
    audio = read_clip(path, num_frames=2).audio
    lag = int(np.argmax([audio[2000 + l:8000 + l] @ truth for l in range(-400, 400)])) - 400
    assert lag == 0


def test_a_file_without_audio_raises_no_audio_track(media):
    with pytest.raises(NoAudioTrack, match='no_audio.mp4: no audio stream'):
        read_clip(media['no_audio.mp4'])
    assert not read_clip(media['no_audio.mp4'], allow_no_audio=True).has_audio


def test_a_silent_track_is_audio_of_zeros_not_an_error(media):
    clip = read_clip(media['silent.mp4'])
    assert clip.has_audio and np.abs(clip.audio).max() < 1e-3


@pytest.mark.parametrize('name, cause', [('truncated.mp4', 'truncated.mp4: '), ('empty.mp4', 'empty file'),
                                         ('text.mp4', 'not a readable media file')])
def test_bad_files_raise_media_error_naming_the_file(media, name, cause):
    with pytest.raises(MediaError) as e:
        read_clip(media[name])
    assert name in str(e.value) and cause in str(e.value)


def test_missing_file_and_bad_window(media, tmp_path):
    with pytest.raises(MediaError, match='nowhere.mp4: file not found'):
        read_clip(tmp_path / 'nowhere.mp4')
    with pytest.raises(MediaError, match='past the end'):
        read_clip(media['h264_aac.mp4'], start=5.0)


def test_window_picks_frames_and_audio_of_the_same_span(media):
    clip = read_clip(media['h264_aac.mp4'], num_frames=4, start=0.5, duration=1.0)
    np.testing.assert_allclose(clip.frame_times, [0.625, 0.875, 1.125, 1.375])
    assert clip.window == (0.5, 1.5) and len(clip.audio) == 11_025 and clip.audio_start == 0.5


def test_separate_audio_file(media, tmp_path):
    wav = tmp_path / 'narration.wav'
    soundfile.write(wav, tone(16_000)[0], 16_000)
    clip = read_clip(media['no_audio.mp4'], audio_path=wav)
    assert clip.has_audio and abs(len(clip.audio) - SECONDS * 11_025) < 50


def test_variable_frame_rate(tmp_path):
    times = np.array([0.0, 0.1, 0.15, 0.5, 0.55, 0.6, 1.2, 1.3, 1.9])       # irregular gaps
    frames = np.zeros((len(times), 32, 32, 3), np.uint8)
    for i in range(len(times)): frames[i] = 20 * (i + 1)
    path = write_media(tmp_path / 'vfr.mkv', frames, 30, frame_times=times, format='matroska')
    for decoder in ('decord', 'pyav'):
        clip = read_clip(path, num_frames=4, start=0.0, duration=2.0, allow_no_audio=True, decoders=(decoder,))
        # sample times 0.25, 0.75, 1.25, 1.75 -> frames shown then: those starting at 0.15, 0.6, 1.2, 1.3
        np.testing.assert_allclose(clip.frame_times, [0.15, 0.6, 1.2, 1.3], atol=2e-3)
        np.testing.assert_allclose(clip.frames.mean((1, 2, 3)), [60, 120, 140, 160], atol=3)


@pytest.mark.parametrize('decoder', ['decord', 'pyav'])
@pytest.mark.parametrize('sr', [22_050, 44_100])
def test_flash_and_click_at_the_same_instant_stay_aligned(tmp_path, decoder, sr):
    "The issue's check: within one spectrogram hop (256 samples at 11,025 Hz) whichever decoder reads the frames."
    frames = np.zeros((64, 32, 32, 3), np.uint8)
    frames[37] = 255                                        # 37 / 16 = 2.3125 s
    wave = np.zeros(int(4.0 * sr), np.float32)
    onset = int(round(37 / FPS * sr))
    wave[onset:onset + sr // 100] = 0.8                     # a 10 ms click at the same instant
    path = write_media(tmp_path / 'sync.mp4', frames, FPS, wave, sr)
    clip = read_clip(path, num_frames=64, decoders=(decoder,))
    flash = clip.frame_times[clip.frames.mean((1, 2, 3)).argmax()]
    click = clip.audio_start + np.argmax(np.abs(clip.audio) > 0.2) / clip.sample_rate
    assert abs(flash - 37 / FPS) < 1e-3
    assert abs(flash - click) <= 256 / 11_025, f'flash {flash:.4f} s, click {click:.4f} s'
