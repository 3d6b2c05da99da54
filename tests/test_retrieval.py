"""vlsa.retrieval against a brute-force reference: a full sort in float64, written here independently."""
import numpy as np
import pytest
import torch

from vlsa.retrieval import DIRECTIONS, rank_metrics, retrieval_table, similarity_ranks

POLICIES = ('mean', 'optimistic', 'pessimistic')


def brute_rank(scores, correct, ties):
    "Sort the best correct candidate among the wrong ones (descending, float64); read its tied positions."
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(sorted(set(correct)))
    best = scores[correct].max()
    wrong = np.delete(scores, correct)
    ordered = np.sort(np.concatenate([[best], wrong]))[::-1]
    positions = np.flatnonzero(ordered == best) + 1   # 1-based positions shared by the best correct one
    return {'optimistic': positions.min(), 'pessimistic': positions.max(), 'mean': positions.mean()}[ties]


def brute_metrics(sim, gts, ks, ties, n_total=None):
    ranks = np.array([brute_rank(row, gt, ties) for row, gt in zip(sim, gts)])
    n_total = n_total or len(ranks)
    out = {f'R@{k}': 100.0 * np.sum(ranks <= k) / n_total for k in ks}
    out.update(MdR=float(np.median(ranks)), MnR=float(np.mean(ranks)))
    return out


def tied_matrix(rng, q, c, levels=6):
    "Scores on a coarse grid, so that many candidates tie with the correct one."
    return np.round(rng.random((q, c)) * levels) / levels


@pytest.mark.parametrize('ties', POLICIES)
@pytest.mark.parametrize('seed', range(4))
def test_single_gt_with_ties_matches_brute_force(ties, seed):
    rng = np.random.default_rng(seed)
    sim = tied_matrix(rng, 60, 45)
    gt = rng.integers(0, 45, size=60)
    ks = (1, 5, 10, 50)
    got = rank_metrics(sim, gt, ks=ks, ties=ties)
    want = brute_metrics(sim, [[g] for g in gt], ks, ties)
    for k, v in want.items(): assert got[k] == pytest.approx(v, abs=1e-12), k


@pytest.mark.parametrize('ties', POLICIES)
def test_several_correct_and_missing_queries_match_brute_force(ties):
    rng = np.random.default_rng(11)
    sim = tied_matrix(rng, 50, 80, levels=4).astype(np.float32)
    gts = [list(rng.choice(80, size=rng.integers(1, 5), replace=False)) for _ in range(50)]
    got = rank_metrics(sim, gts, ks=(1, 5, 10), ties=ties, n_total=64)   # 14 queries are missing: misses
    want = brute_metrics(sim, gts, (1, 5, 10), ties, n_total=64)
    for k, v in want.items(): assert got[k] == pytest.approx(v, abs=1e-12), k
    # the same ground truth as a boolean matrix
    mask = np.zeros_like(sim, dtype=bool)
    for i, g in enumerate(gts): mask[i, g] = True
    assert rank_metrics(sim, mask, ks=(1, 5, 10), ties=ties, n_total=64) == got


@pytest.mark.parametrize('ties', POLICIES)
def test_chunked_equals_unchunked_exactly(ties):
    rng = np.random.default_rng(3)
    sim = torch.from_numpy(tied_matrix(rng, 101, 101))
    whole = similarity_ranks(sim, ties=ties, chunk=101)
    for chunk in (1, 7, 50):
        assert torch.equal(similarity_ranks(sim, ties=ties, chunk=chunk), whole)


def test_hand_made_4x4():
    # Diagonal ground truth. Scores of the correct candidate are on the diagonal.
    sim = np.array([[0.9, 0.1, 0.2, 0.3],    # q0: correct 0.9 is the best            -> rank 1
                    [0.8, 0.7, 0.1, 0.0],    # q1: 0.8 beats 0.7                       -> rank 2
                    [0.5, 0.5, 0.5, 0.1],    # q2: 0.5 tied with two wrong ones        -> ranks 1 / 3 / 2
                    [0.4, 0.3, 0.2, 0.1]])   # q3: three wrong ones beat 0.1           -> rank 4
    m = rank_metrics(sim, ks=(1, 2, 3), ties='mean')
    # ranks 1, 2, 2, 4: R@1 = 1/4, R@2 = 3/4, R@3 = 3/4; median (2 + 2) / 2 = 2; mean 9 / 4
    assert (m['R@1'], m['R@2'], m['R@3'], m['MdR'], m['MnR']) == (25.0, 75.0, 75.0, 2.0, 2.25)
    m = rank_metrics(sim, ks=(1, 2, 3), ties='optimistic')   # ranks 1, 2, 1, 4
    assert (m['R@1'], m['R@2'], m['R@3'], m['MdR'], m['MnR']) == (50.0, 75.0, 75.0, 1.5, 2.0)
    m = rank_metrics(sim, ks=(1, 2, 3), ties='pessimistic')  # ranks 1, 2, 3, 4
    assert (m['R@1'], m['R@2'], m['R@3'], m['MdR'], m['MnR']) == (25.0, 50.0, 75.0, 2.5, 2.5)
    # the peers' MSR-VTT convention: 5 clips exist, one is missing: R@k over 5, ranks over the 4 present
    m = rank_metrics(sim, ks=(1,), ties='optimistic', n_total=5)
    assert (m['R@1'], m['MnR'], m['queries'], m['n_total']) == (40.0, 2.0, 4, 5)


def test_tied_query_is_counted_once():
    # Every candidate ties: the buggy `np.where(argsort == gt)` style counts can exceed 100 %; ours cannot.
    sim = np.ones((10, 10))
    m = rank_metrics(sim, ks=(1, 10), ties='optimistic')
    assert m['R@1'] == 100.0 and m['R@10'] == 100.0
    assert rank_metrics(sim, ks=(1,), ties='mean')['MnR'] == 5.5


@pytest.mark.parametrize('bad, message', [
    (dict(gt=[0, 1]), 'gt has 2 entries for 3 queries'),
    (dict(gt=[[0], [], [2]]), 'query 1 has no correct candidate'),
    (dict(n_total=2), 'n_total (2) is smaller'),
    (dict(ties='average'), 'ties must be one of'),
])
def test_bad_arguments_are_explained(bad, message):
    with pytest.raises(ValueError) as e:
        rank_metrics(np.eye(3), **bad)
    assert message in str(e.value)


def test_nan_is_an_error():
    sim = np.eye(3); sim[1, 2] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        rank_metrics(sim)


def test_table_matches_brute_force_in_every_direction():
    rng = np.random.default_rng(5)
    n, d = 30, 4
    # Small integer embeddings: dot products are exact in float32, and many of them tie.
    video = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
    audio = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
    counts = rng.integers(1, 4, size=n)                       # 1 to 3 captions per item
    item_of = np.repeat(np.arange(n), counts)
    rng.shuffle(item_of)
    text = rng.integers(-1, 2, size=(len(item_of), d)).astype(np.float32)
    captions_of = [list(np.flatnonzero(item_of == i)) for i in range(n)]
    has_audio = np.ones(n, dtype=bool); has_audio[[3, 17, 21]] = False
    ks = (1, 5, 10)
    table = retrieval_table({'video': video, 'audio': audio, 'text': text, 'has_audio': has_audio},
                            captions_of, ks=ks, ties='mean', count_missing=True, chunk=7)
    A = np.flatnonzero(has_audio)
    f64 = lambda x: x.astype(np.float64)
    fused = f64(video).copy(); fused[A] = (f64(video[A]) + f64(audio[A])) / 2
    t_with_audio = np.flatnonzero(has_audio[item_of])
    pos = {item: j for j, item in enumerate(A)}               # item -> column among the items with audio
    expected = {
        'T->V': brute_metrics(f64(text) @ f64(video).T, [[i] for i in item_of], ks, 'mean'),
        'V->T': brute_metrics(f64(video) @ f64(text).T, captions_of, ks, 'mean'),
        'T->A': brute_metrics(f64(text[t_with_audio]) @ f64(audio[A]).T, [[pos[i]] for i in item_of[t_with_audio]],
                              ks, 'mean', n_total=len(text)),
        'A->T': brute_metrics(f64(audio[A]) @ f64(text).T, [captions_of[i] for i in A], ks, 'mean', n_total=n),
        'V->A': brute_metrics(f64(video[A]) @ f64(audio[A]).T, [[j] for j in range(len(A))], ks, 'mean', n_total=n),
        'A->V': brute_metrics(f64(audio[A]) @ f64(video).T, [[i] for i in A], ks, 'mean', n_total=n),
        'T->V+A': brute_metrics(f64(text) @ fused.T, [[i] for i in item_of], ks, 'mean'),
    }
    assert list(table.index) == list(DIRECTIONS)
    for direction, want in expected.items():
        for k, v in want.items():
            assert table.loc[direction, k] == pytest.approx(v, abs=1e-12), (direction, k)
