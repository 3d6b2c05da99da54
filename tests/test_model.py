"""The VLSA model across modules: no leakage, reproducible masking, switches, and an over-fitting run."""
import itertools

import pytest
import torch

from vlsa.config import MODALITIES, get_config, override, seed_everything
from vlsa.losses import GLOBAL_PAIRS
from vlsa.model import VLSA
from vlsa.objectives import Pretraining

SMALL = ['model.encoder.width=32', 'model.encoder.heads=2', 'model.encoder.depth=1', 'model.decoder.width=16',
         'model.decoder.heads=2', 'model.decoder.depth=1', 'model.embed_dim=16']


def make_batch(cfg, b=4, length=12, seed=0):
    m, g = cfg.model, torch.Generator().manual_seed(seed)
    batch = {'video': torch.randn(b, m.video.num_frames, 3, m.video.frame_size, m.video.frame_size, generator=g),
             'audio': torch.randn(b, 1, m.audio.freq_bins, m.audio.time_frames, generator=g),
             'text_ids': torch.randint(m.text.first_word_id, m.text.vocab_size, (b, length), generator=g),
             'text_mask': torch.ones(b, length, dtype=torch.long)}
    batch['text_ids'][:, 0], batch['text_ids'][:, -1] = m.text.cls_id, m.text.sep_id
    batch['text_mask'][0, -3:] = 0          # one padded sentence
    batch['text_ids'][0, -3:] = m.text.pad_id
    return batch


def test_no_leakage_into_global_embeddings_but_joint_pass_mixes():
    cfg = get_config('tiny')
    model = VLSA(cfg).eval()
    batch = make_batch(cfg)
    other = dict(batch, audio=torch.randn_like(batch['audio']), text_ids=batch['text_ids'].flip(0))
    with torch.no_grad():
        # encode_video sees the video only: other audio and text leave it unchanged, bit for bit
        assert torch.equal(model.encode_video(batch['video']), model.encode_video(other['video']))
        # while in the joint LPMM pass, the same video tokens' outputs depend on the audio
        v = model.embed['video'](batch['video']).flatten(1, 2)
        keep = lambda x: torch.ones(x.shape[:2], dtype=torch.bool)
        def joint(audio):
            a, t = model.embed['audio'](audio), model.embed['text'](batch['text_ids'])
            return model.joint_encode({'video': v, 'audio': a, 'text': t}, {'video': keep(v), 'audio': keep(a), 'text': keep(t)})['video']
        assert not torch.allclose(joint(batch['audio']), joint(other['audio']))
        # and a clip's global embedding does not depend on the other clips in the batch
        alone = model.encode_video(batch['video'][:1])
        torch.testing.assert_close(model.encode_video(batch['video'])[:1], alone, atol=1e-5, rtol=1e-5)


def test_masking_is_reproducible_from_the_generator_seed():
    cfg = override(get_config('tiny'), SMALL)
    model = Pretraining(VLSA(cfg))
    batch = make_batch(cfg)
    a = model(batch, torch.Generator().manual_seed(5))
    b = model(batch, torch.Generator().manual_seed(5))
    c = model(batch, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a['lpmm_video'], c['lpmm_video'])


def expected_used(name, cfg):
    "Whether parameter `name` should receive a gradient under the config's switches."
    m, loss = cfg.model, cfg.model.loss
    global_mods = {x for pair in GLOBAL_PAIRS[loss.global_objective] for x in pair} if loss.use_gam else set()
    used_mods = set(MODALITIES) if loss.use_lpmm else global_mods
    if name.startswith('heads.'): return loss.use_gam     # the objective's own: temperature, matching heads
    part, key = name.split('.')[1:3]                       # model.PART.KEY: the network's
    if part == 'embed': return key in used_mods
    if part == 'encoders': return any(x in used_mods for x in key.split('_'))
    if part == 'project': return key in global_mods
    if part in ('decoders', 'decoder_pos', 'heads'): return loss.use_lpmm
    if part == 'encoder_mask_token': return loss.use_lpmm      # exists only for the SimMIM-style baseline
    raise AssertionError(f'unexpected parameter {name}')


SHARING = [('video', 'audio', 'text'), ('video', 'text'), ('audio', 'text'), ('video', 'audio'), ()]
SWITCHES = [(True, True, 'gam'), (True, True, 'vtm'), (True, False, 'gam'), (False, True, 'gam'), (False, True, 'vtm'),
            (False, True, 'gam_vtm')]   # not the paper's: GAM's two pairs and a direct video-text one


@pytest.mark.parametrize('drop_masked', [True, False])
@pytest.mark.parametrize('lpmm, gam, objective', SWITCHES)
@pytest.mark.parametrize('shared_encoder', SHARING)
def test_gradients_reach_exactly_the_parameters_in_use(lpmm, gam, objective, shared_encoder, drop_masked):
    cfg = override(get_config('tiny'), SMALL + [f'model.loss.use_lpmm={lpmm}', f'model.loss.use_gam={gam}',
                                                 f'model.drop_masked={drop_masked}',
                                                 f'model.loss.global_objective={objective}',
                                                 f'model.shared_encoder={list(shared_encoder)}'])
    model = Pretraining(VLSA(cfg))
    out = model(make_batch(cfg), torch.Generator().manual_seed(0))
    assert torch.isfinite(out['loss'])
    out['loss'].backward()
    for name, p in model.named_parameters():
        got = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert got == expected_used(name, cfg), f'{name}: gradient {got}, expected {not got}'
    if not lpmm: assert not hasattr(model.model, 'decoders')


@pytest.mark.parametrize('shared_decoder', SHARING)
@pytest.mark.parametrize('drop_masked', [True, False])
def test_decoder_sharing_and_dense_encoder_run_a_step(shared_decoder, drop_masked):
    cfg = override(get_config('tiny'), SMALL + [f'model.shared_decoder={list(shared_decoder)}',
                                                 f'model.drop_masked={drop_masked}'])
    model = Pretraining(VLSA(cfg))
    n_decoders = len(set(model.model.decoder_of.values()))
    assert n_decoders == (1 if len(shared_decoder) == 3 else 3 if len(shared_decoder) < 2 else 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(make_batch(cfg), torch.Generator().manual_seed(0))
    out['loss'].backward(); opt.step()
    assert torch.isfinite(out['loss'])
    for name, p in model.named_parameters():
        assert (p.grad is not None) == expected_used(name, cfg), name


def test_clips_without_audio_take_no_part_in_audio_terms():
    cfg = override(get_config('tiny'), SMALL)
    model = Pretraining(VLSA(cfg))
    batch = make_batch(cfg, b=4)
    batch['has_audio'] = torch.tensor([True, True, True, False])
    out = model(batch, torch.Generator().manual_seed(0))
    changed = dict(batch, audio=batch['audio'].clone())
    changed['audio'][3] = 1e3                                  # garbage where there is no audio
    out2 = model(changed, torch.Generator().manual_seed(0))
    for k in out: torch.testing.assert_close(out[k], out2[k], equal_nan=True, msg=k)


def textures(g, shape, p):
    "Random static textures: a random p x p tile per clip, plus a random tile per patch position shared by all clips."
    b, t, *rest = shape
    *ch, h, w = rest
    clip_tile = torch.randn(b, 1, *ch, p, p, generator=g).repeat(1, t, *[1] * len(ch), h // p, w // p)
    return clip_tile + torch.randn(*ch, h, w, generator=g)


def test_tiny_model_overfits_eight_random_clips():
    """Over-fit one batch, every source of randomness fixed (the masks too, by seeding the generator each step):
    LPMM must fall by 90 % and in-batch audio-video and audio-text retrieval must be perfect."""
    seed_everything(0)
    cfg = get_config('tiny')
    m, g, B = cfg.model, torch.Generator().manual_seed(0), 8
    batch = {'video': textures(g, (B, m.video.num_frames, 3, m.video.frame_size, m.video.frame_size), m.video.patch_size),
             'audio': textures(g, (B, 1, m.audio.freq_bins, m.audio.time_frames), m.audio.patch_size),
             'text_ids': torch.randint(m.text.first_word_id, m.text.vocab_size, (B, 16), generator=g),
             'text_mask': torch.ones(B, 16, dtype=torch.long)}
    batch['text_ids'][:, 0], batch['text_ids'][:, -1] = m.text.cls_id, m.text.sep_id
    objective = Pretraining(VLSA(cfg))
    model = objective.model
    opt = torch.optim.AdamW(objective.parameters(), lr=2e-3, weight_decay=0.0)
    terms = ('lpmm_video', 'lpmm_audio', 'lpmm_text')
    history = []
    for _ in range(100):
        out = objective(batch, torch.Generator().manual_seed(1))
        history.append({k: out[k].item() for k in terms})
        opt.zero_grad(); out['loss'].backward(); opt.step()
    first, last = sum(history[0].values()), sum(history[-1].values())
    assert last <= 0.1 * first, f'LPMM fell from {first:.3f} to {last:.3f} only'
    for k in ('lpmm_video', 'lpmm_audio'):
        assert history[-1][k] <= 0.5 * history[0][k], f'{k}: {history[0][k]:.3f} -> {history[-1][k]:.3f}'
    model.eval()
    with torch.no_grad():
        v, a = model.encode_video(batch['video']), model.encode_audio(batch['audio'])
        t = model.encode_text(batch['text_ids'], batch['text_mask'])
    target = torch.arange(B)
    assert torch.equal((a @ v.T).argmax(1), target) and torch.equal((v @ a.T).argmax(1), target)
    assert torch.equal((a @ t.T).argmax(1), target) and torch.equal((t @ a.T).argmax(1), target)



@pytest.mark.parametrize('case', ['gam', 'vtm', 'no-matching', 'lpmm-only'])
def test_a_seed_gives_the_initial_weights_it_gave_before_the_objectives_moved(case):
    """The objectives left the network after fec2c11; seed 0 still draws the same initial weights for the network and
    the objective, and leaves torch's generator where it was (`VLSA._draw_as_before_2026_12`), so tables made before
    still follow from the code. Fingerprints from tests/fixtures/init-fec2c11/make.py run at fec2c11."""
    import json, sys
    from pathlib import Path
    here = Path(__file__).parent / 'fixtures' / 'init-fec2c11'
    sys.path.insert(0, str(here))
    try: from make import CASES, fingerprint, initial_state
    finally: sys.path.remove(str(here))
    then = json.loads((here / 'fingerprints.json').read_text())[case]
    now = fingerprint(initial_state(override(get_config('tiny'), ['model.encoder.depth=1', 'model.decoder.depth=1'] + CASES[case])))
    assert sorted(now) == sorted(then)
    for k, v in then.items(): assert now[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
