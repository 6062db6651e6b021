"""The torch detectors on small synthetic data, a few epochs each, on the CPU."""

import numpy as np
import pytest
import torch

from components.detectors import get_detector, load_detector

DEEP = ["conv_bigru_ae", "lstm_ae", "lstm_vae", "lstm_forecaster"]
SMALL = dict(window=8, hidden=16, epochs=3, batch_size=32, device="cpu")


def _series(n, f=4, seed=0):
    t = np.arange(n)[:, None]
    rng = np.random.default_rng(seed)
    return (0.5 + 0.3 * np.sin(2 * np.pi * t / 24 + np.arange(f)) + 0.02 * rng.normal(size=(n, f))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    train = _series(400)
    return train, {name: get_detector(name, **SMALL).fit(train) for name in DEEP}


@pytest.mark.parametrize("name", DEEP)
@pytest.mark.slow
def test_shapes_and_contributions(name, fitted):
    _, dets = fitted
    x = _series(150, seed=1)
    s, c = dets[name].score_and_contributions(x)
    assert s.shape == (150,)
    assert np.isfinite(s).all()
    assert c.shape == (150, 4)
    assert np.allclose(c.sum(axis=1), 1)
    assert (c >= 0).all()
    assert np.array_equal(s, dets[name].score(x))


@pytest.mark.parametrize("name", DEEP)
@pytest.mark.parametrize("at", [2, 70, 149])
def test_scores_are_aligned_with_time_steps(name, at, fitted):
    # a fault on metric 1 at one step, also inside the first window-1 steps and at the very end
    _, dets = fitted
    x = _series(150, seed=1)
    x[at, 1] += 4.0
    s, c = dets[name].score_and_contributions(x)
    assert int(np.argmax(s)) == at
    assert int(np.argmax(c[at])) == 1


def test_score_stride_covers_every_step(fitted):
    _, dets = fitted
    x = _series(150, seed=1)
    x[70, 1] += 4.0
    det = dets["lstm_ae"]
    det.set_params(score_stride=8)
    try:
        s = det.score(x)
    finally:
        det.set_params(score_stride=1)
    assert s.shape == (150,)
    assert np.isfinite(s).all()
    assert int(np.argmax(s)) == 70


@pytest.mark.parametrize("name", DEEP)
def test_cpu_training_is_deterministic(name, fitted):
    train, dets = fitted
    again = get_detector(name, **SMALL).fit(train)
    x = _series(100, seed=2)
    assert np.array_equal(again.score(x), dets[name].score(x))
    assert again.history_.train_loss == dets[name].history_.train_loss


@pytest.mark.parametrize("name", DEEP)
def test_save_load_gives_identical_scores(name, fitted, tmp_path):
    _, dets = fitted
    dets[name].save(tmp_path / "m.npz")
    back = load_detector(tmp_path / "m.npz")
    x = _series(100, seed=3)
    assert type(back) is type(dets[name])
    assert np.array_equal(back.score(x), dets[name].score(x))
    assert np.array_equal(back.contributions(x), dets[name].contributions(x))


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine reading a GPU-trained model")
def test_a_model_trained_on_cuda_loads_on_cpu(fitted, tmp_path):
    # weights are stored as plain arrays, so where they were trained does not travel with them;
    # the configured device="cuda" does, and a machine without CUDA serves on the CPU
    _, dets = fitted
    det = dets["conv_bigru_ae"]
    det.set_params(device="cuda")  # as configured on a GPU worker
    try:
        det.save(tmp_path / "m.npz")
    finally:
        det.set_params(device="cpu")
    back = load_detector(tmp_path / "m.npz")
    assert back.get_params()["device"] == "cuda"
    assert next(back.model_.parameters()).device.type == "cpu"
    x = _series(100, seed=3)
    assert np.array_equal(back.score(x), det.score(x))


def test_epoch_callback_sees_each_epoch_and_can_stop_training():
    seen = []

    class Stop(Exception):
        pass

    def callback(epoch, val_loss):
        seen.append((epoch, val_loss))
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        get_detector("lstm_ae", **SMALL).fit(_series(300), epoch_callback=callback)
    assert [e for e, _ in seen] == [0, 1]
    assert all(v > 0 for _, v in seen)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    # One learnable level, trained toward the head of the series (0) while the held-out tail
    # sits at 10 where the level starts: every epoch of training moves it further from the
    # tail, so validation loss rises after epoch 0 by construction, not by chance.
    from torch import nn

    from components.detectors.torch_loop import train_windows

    x = torch.cat([torch.zeros(200, 1), torch.full((50, 1), 10.0)])
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(10.0)

    def loss(m, batch):
        return ((m(torch.zeros(1, 1)) - batch.mean()) ** 2).squeeze()

    h = train_windows(
        model,
        loss,
        x,
        5,
        lr=0.5,
        batch_size=16,
        epochs=30,
        patience=2,
        val_fraction=0.2,
        seed=0,
        amp=False,
        verbose=False,
    )
    assert h.best_epoch == 0
    assert h.epochs_run == 3  # epoch 0, then 2 epochs without improvement
    assert h.val_loss[1] > h.val_loss[0]
    assert h.val_loss[2] > h.val_loss[1]
    restored = float((model.bias.detach() - 10.0) ** 2)
    assert restored == pytest.approx(h.val_loss[0])


def test_too_short_input_is_named(fitted):
    _, dets = fitted
    with pytest.raises(ValueError, match="series of 5 steps is shorter than the window length 8"):
        dets["lstm_ae"].score(_series(5))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_is_named():
    with pytest.raises(ValueError, match="device 'cuda' asked for, but CUDA is not available"):
        get_detector("lstm_ae", device="cuda").fit(_series(300))


def test_fits_in_parallel_threads_match_a_lone_fit(fitted):
    # Prefect fans detectors out over threads; torch's RNG is global, so this must not leak
    from concurrent.futures import ThreadPoolExecutor

    train, dets = fitted
    with ThreadPoolExecutor(4) as pool:
        futures = {n: pool.submit(lambda n=n: get_detector(n, **SMALL).fit(train)) for n in DEEP}
    x = _series(100, seed=2)
    for n, f in futures.items():
        assert np.array_equal(f.result().score(x), dets[n].score(x)), n


def test_torch_fits_on_parallel_threads_each_time_their_own_fit(tmp_path):
    """`train` fans fits out on threads, but torch fits run one at a time (one process-global
    RNG). Each fit's ``fit_seconds`` is its own fit, not also the wait for another's: the timed
    intervals are disjoint, so their sum is at most the wall time of all of them (before, a fit
    that waited counted the other's fit too: 540 s for four fits of 8-500 s)."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tasks.fit import fit_detector

    processed = tmp_path / "processed"
    processed.mkdir()
    x = np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32)
    np.savez(processed / "arrays.npz", train=x)
    (processed / "meta.json").write_text(json.dumps({"features": ["a", "b", "c"]}))
    names = ["lstm_ae", "conv_bigru_ae", "lstm_forecaster"]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(names)) as pool:
        fits = list(pool.map(lambda n: fit_detector.fn(n, SMALL, processed, tmp_path / "models"), names))
    wall = time.perf_counter() - started
    seconds = [f["fit_seconds"] for f in fits]
    assert all(s > 0 for s in seconds) and sum(seconds) <= wall, (seconds, wall)


def test_a_torch_fit_reports_its_epochs_as_log_lines(tmp_path, monkeypatch, capsys):
    """No terminal under Prefect or in a log file, so no progress bar: a torch fit says which
    epoch it is on, with the validation loss and the time so far, at most every
    `PROGRESS_SECONDS` (0 here: every epoch)."""
    import json

    import tasks.fit
    from tasks.fit import fit_detector

    monkeypatch.setattr(tasks.fit, "PROGRESS_SECONDS", 0.0)
    processed = tmp_path / "processed"
    processed.mkdir()
    np.savez(processed / "arrays.npz", train=np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    (processed / "meta.json").write_text(json.dumps({"features": ["a", "b", "c"]}))
    fit_detector.fn("lstm_ae", {**SMALL, "epochs": 3, "patience": 10}, processed, tmp_path / "models")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if " epoch " in ln]
    assert [ln.split(":")[0] for ln in lines] == ["[lstm_ae] epoch 1/3", "[lstm_ae] epoch 2/3", "[lstm_ae] epoch 3/3"]
    assert all("validation loss" in ln and ln.endswith(" s)") for ln in lines)


def test_uae_dynamic_part_flags_a_change_then_forgets_a_lasting_one_the_static_part_keeps():
    """uae's ``gauss_dynamic``: each metric's error against its own last ``recent`` errors. A
    lasting shift is flagged where it starts and forgotten once the window holds only the new
    level, where the static part (errors against train's) stays high; a short fault after it
    stands out again. The first steps follow on from the history (the held-out tail's errors)."""
    from components.detectors.deep import _dynamic_tail_log_p, _tail_log_p

    rng = np.random.default_rng(0)
    history, parts = rng.normal(1.0, 0.1, (300, 2)), rng.normal(1.0, 0.1, (600, 2))
    parts[100:, 0] += 1.0  # metric 0's errors up for good from step 100
    parts[450:455, 1] += 1.0  # a short fault on metric 1
    dynamic = _dynamic_tail_log_p(parts, history, recent=100)
    static = _tail_log_p(parts, history.mean(axis=0), history.std(axis=0))
    calm = dynamic[:100].mean()  # no shift yet: both metrics as in the history
    assert dynamic[100:112].max() > 5 * calm  # the shift, where it starts
    settled = slice(220, 440)  # 100 steps of window and 10 of smoothing after it: the new level only
    assert dynamic[settled].mean() < 1.2 * calm and static[settled].mean() > 20 * static[:100].mean()
    assert dynamic[450:465].max() > 2 * dynamic[settled].max()  # the fault on top of the new level


def test_uae_gauss_dynamic_adds_the_dynamic_part_to_the_static_one():
    from components.detectors.deep import _dynamic_tail_log_p

    t = np.arange(700)[:, None]
    x = 0.5 + 0.3 * np.sin(2 * np.pi * t / 24 + np.arange(2)) + 0.05 * np.random.default_rng(1).normal(size=(700, 2))
    x = x.astype(np.float32)
    params = {"window": 8, "hidden": 8, "latent": 2, "epochs": 2, "device": "cpu", "amp": False, "recent": 50}
    static = get_detector("uae", **params).fit(x[:500])
    both = get_detector("uae", combine="gauss_dynamic", **params).fit(x[:500])
    assert static.recent_errors_.shape == (0, 2) and both.recent_errors_.shape == (50, 2)
    parts = both._step_parts(x[500:])[0]
    np.testing.assert_allclose(
        both.score(x[500:]), static.score(x[500:]) + _dynamic_tail_log_p(parts, both.recent_errors_, 50), rtol=1e-6
    )
    assert both.context_steps() == (7 + 50 + 9, 7)
