"""The LSTM forecasts with a numpy forward pass: equal to torch's, and a pickled model
(a fit done in a worker process) forecasts in a process that never loads torch."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np

from vnstitch.forecast.lstm import GlobalLSTM, _forward


def _fitted() -> tuple[GlobalLSTM, np.ndarray]:
    t = np.arange(400)
    y = (10 + 3 * np.sin(2 * np.pi * t / 24)
         + np.random.default_rng(0).normal(0, 0.5, t.size))[:, None]
    return GlobalLSTM(24, horizon=6, max_batches=20).fit(y), y


def test_numpy_forward_equals_the_torch_network() -> None:
    model, y = _fitted()
    seq, flag = model._features(y, np.arange(100, 400, 5))
    torch_out = model._predict_norm(model._net, seq, flag)
    np.testing.assert_allclose(_forward(model._weights or {}, seq, flag), torch_out,
                               atol=1e-5)
    # control: the trained network is not the naive forecast (its output layer learned)
    assert np.abs(torch_out - seq[:, -1, 0:1]).max() > 1e-3


def test_a_pickled_model_forecasts_without_torch() -> None:
    model, y = _fitted()
    mean, _ = model.rolling(y, [y.shape[0]], 6)
    code = ("import json, pickle, sys; import numpy as np;"
            "m = pickle.loads(sys.stdin.buffer.read());"
            f"v = np.asarray({y[:, 0].tolist()!r})[:, None];"
            "print(json.dumps(m.rolling(v, [v.shape[0]], 6)[0][0, :, 0].tolist()));"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(model),
                         capture_output=True, check=True).stdout.decode().splitlines()
    np.testing.assert_allclose(json.loads(out[0]), mean[0, :, 0], rtol=1e-9)
    assert out[1] == "False"
