"""InfoNCE under torch.distributed (2 processes, gloo): gathering with gradients gives the single-process loss
and gradient of the whole batch, and clips without audio (masked, not dropped) give those of the clips with it."""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from vlsa.losses import InfoNCE

B, D, WORLD = 6, 8, 2
# which clips of the global batch have no audio: none (no mask at all), some, all of one rank's, all
CASES = {'all there': None, 'some rows': [2, 6, 10], 'a rank without any': list(range(B, 2 * B)),
         'no audio at all': list(range(2 * B))}


def embeddings():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(WORLD * B, D, generator=g), dim=-1)
    return x, F.normalize(x + 0.5 * torch.randn(WORLD * B, D, generator=g), dim=-1)


def validity(missing):
    valid = torch.ones(WORLD * B, dtype=torch.bool)
    if missing: valid[missing] = False
    return valid


def worker(rank, init_file, out_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=WORLD)
    try:
        for name, missing in CASES.items():
            x, y = embeddings()
            mine = slice(rank * B, (rank + 1) * B)
            x, y = x[mine].clone().requires_grad_(), y[mine].clone().requires_grad_()
            loss = InfoNCE(0.1)(x, y, None if missing is None else validity(missing)[mine])
            loss.backward()
            torch.save({'loss': loss.detach(), 'gx': x.grad, 'gy': y.grad}, os.path.join(out_dir, f'{name}-{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not built in')
def test_gathered_infonce_equals_one_process_on_the_clips_with_audio(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=WORLD, join=True)
    for name, missing in CASES.items():
        parts = [torch.load(tmp_path / f'{name}-{r}.pt') for r in range(WORLD)]
        valid = validity(missing)
        x, y = (t.clone().requires_grad_() for t in embeddings())
        mean = torch.stack([p['loss'] for p in parts]).mean()
        assert torch.isfinite(mean) and all(torch.isfinite(p['gx']).all() for p in parts), name
        if not valid.any():   # a batch without audio: nothing to learn from, and no NaN
            assert mean.item() == 0.0 and all((p['gx'] == 0).all() for p in parts); continue
        loss = InfoNCE(0.1)(x[valid], y[valid])   # one process that never saw the clips without audio
        loss.backward()
        # DDP averages over ranks: the mean of the ranks' losses and of their gradients is the one-process one
        torch.testing.assert_close(mean, loss.detach(), msg=name)
        torch.testing.assert_close(torch.cat([p['gx'] for p in parts]) / WORLD, x.grad, msg=name)
        torch.testing.assert_close(torch.cat([p['gy'] for p in parts]) / WORLD, y.grad, msg=name)
