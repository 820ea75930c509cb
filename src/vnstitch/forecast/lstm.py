"""A global LSTM (PyTorch, CPU) trained across all series at once.

Theory of operation. Each series is divided by its training mean (so one network serves
flows of any size). A sample is an origin ``t`` of one series: the LSTM reads the last
``window`` normalised values, each step carrying (value, value one season earlier,
time-of-day sine/cosine); its final hidden state, concatenated with the seasonal-lag
values for the ``H`` future steps, goes through a linear head that predicts the
``H`` future values *as changes from the last observation* (so an untrained network is
the naive forecast). The loss is L1 weighted by series scale, which is the pooled NMAE
the backtests report.

Training is bounded without reading a clock: fixed seed, Adam, mini-batches, at most
``max_epochs`` epochs and at most ``max_batches`` gradient steps (about 0.1 s each on
two CPU cores with the defaults, so ~20 s), early stopping when the validation loss
(last 15% of training origins, checked every ``eval_every`` batches) has not improved
``patience`` times in a row; the best weights are kept. The network is trained for
``horizon`` steps (an option); asking for more steps falls back to repeating its last step.
With too little history to train on (fewer than ``window + 10 + horizon`` steps) the
model is the naive forecast, said in ``notes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vnstitch.forecast.base import FloatArray, ForecastError, IntArray, PointForecaster


class GlobalLSTM(PointForecaster):
    """One LSTM for all series; see the module docstring."""

    name = "lstm"

    def __init__(self, season: int, *, horizon: int = 12, window: int = 12,
                 hidden: int = 24, max_epochs: int = 4, max_batches: int = 200,
                 batch_size: int = 1024, patience: int = 3, eval_every: int = 25, seed: int = 0,
                 max_train_samples: int = 60_000, **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        self.horizon = horizon
        self.window = window
        self.hidden = hidden
        self.max_epochs = max_epochs
        self.max_batches = max_batches
        self.batch_size = batch_size
        self.patience = patience
        self.eval_every = eval_every
        self.seed = seed
        self.max_train_samples = max_train_samples
        self._net: Any = None
        #: The trained weights as numpy arrays (inference needs no torch; see _forward).
        self._weights: dict[str, np.ndarray[Any, Any]] | None = None
        self._scale: FloatArray | None = None
        self.epochs_run = 0

    def __getstate__(self) -> dict[str, Any]:
        # The torch network stays where it was trained: a pickled model (a fit done in a
        # worker process) carries only its weights as numpy arrays and forecasts with
        # the numpy forward pass, so the process that receives it never loads torch.
        state = dict(self.__dict__)
        state["_net"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _lag(self) -> int:
        return self.season if self.season > 1 else 1

    def _features(self, values: FloatArray,
                  origins: IntArray) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Sequence input (S*N, window, 4) and future seasonal lags (S*N, H)."""
        assert self._scale is not None
        z = values / self._scale
        m, w, h = self._lag(), self.window, self.horizon
        steps = origins[:, None] - w + np.arange(w)[None, :]  # (S, w)
        cur = z[np.clip(steps, 0, None)]  # (S, w, N)
        past = z[np.clip(steps - m, 0, None)]
        phase = 2 * np.pi * (steps % max(self.season, 1)) / max(self.season, 1)
        sin = np.broadcast_to(np.sin(phase)[..., None], cur.shape)
        cos = np.broadcast_to(np.cos(phase)[..., None], cur.shape)
        seq = np.stack([cur, past, sin, cos], axis=-1)  # (S, w, N, 4)
        seq = seq.transpose(0, 2, 1, 3).reshape(-1, w, 4)
        fut = origins[:, None] - 1 + np.arange(1, h + 1)[None, :]
        k = -(-np.arange(1, h + 1) // m)
        fidx = np.clip(fut - m * k[None, :], 0, None)
        flag = z[fidx].transpose(0, 2, 1).reshape(-1, h)  # (S*N, H)
        return seq.astype(np.float32), flag.astype(np.float32)

    def _build(self) -> Any:
        import torch  # noqa: PLC0415 (torch is heavy: load only when used)
        from torch import nn  # noqa: PLC0415

        h, hid = self.horizon, self.hidden

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(4, hid, batch_first=True)
                self.hid = nn.Linear(hid + h, 64)
                self.out = nn.Linear(64, h)
                # zero output layer: an untrained network is the naive forecast
                nn.init.zeros_(self.out.weight)
                nn.init.zeros_(self.out.bias)

            def forward(self, seq: Any, flag: Any) -> Any:
                out, _ = self.lstm(seq)
                last = seq[:, -1, 0:1]
                feats = torch.cat([out[:, -1], flag - last], dim=1)
                return last + self.out(torch.relu(self.hid(feats)))

        return Net()

    def _fit_point(self, history: FloatArray) -> None:
        import torch  # noqa: PLC0415 (torch is heavy: load only when used)

        t_len, n = history.shape
        self._scale = np.abs(history).mean(axis=0) + 1e-6
        first = self.window + self._lag()
        last = t_len - self.horizon
        if last - first < 10:
            first = self.window
        self._net = None
        self._weights = None
        if last - first < 10:
            self.notes.append(f"lstm: naive forecast (need more than "
                              f"{first + 10 + self.horizon} steps to train, have {t_len})")
            return
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        origins = np.arange(first, last + 1, dtype=np.int64)
        n_val = max(1, origins.size * 15 // 100)
        train_o, val_o = origins[:-n_val], origins[-n_val:]
        if train_o.size * n > self.max_train_samples:  # subsample origins, keep all series
            train_o = np.sort(rng.choice(train_o, self.max_train_samples // n, replace=False))
        x_seq, x_flag = self._features(history, train_o)
        y = self._targets(history, train_o)
        w = np.tile(self._scale, train_o.size).astype(np.float32)
        v_seq, v_flag = self._features(history, val_o)
        v_y = self._targets(history, val_o)
        v_w = np.tile(self._scale, val_o.size).astype(np.float32)
        # two threads at most, fewer when the process was given a smaller budget
        # (OMP_NUM_THREADS: the live PRA's fit workers)
        torch.set_num_threads(min(2, torch.get_num_threads()))
        net = self._build()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        t_seq, t_flag = torch.from_numpy(x_seq), torch.from_numpy(x_flag)
        t_y, t_w = torch.from_numpy(y), torch.from_numpy(w)
        best, best_state, bad, batches = np.inf, None, 0, 0
        gen = torch.Generator().manual_seed(self.seed)
        for _epoch in range(self.max_epochs):
            self.epochs_run = _epoch + 1
            net.train()
            perm = torch.randperm(t_y.shape[0], generator=gen)
            for b0 in range(0, perm.numel(), self.batch_size):
                idx = perm[b0:b0 + self.batch_size]
                pred = net(t_seq[idx], t_flag[idx])
                loss = ((pred - t_y[idx]).abs() * t_w[idx, None]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                batches += 1
                if batches % self.eval_every == 0:
                    val = self._loss(net, v_seq, v_flag, v_y, v_w)
                    net.train()
                    if val < best - 1e-6:
                        best, bad = val, 0
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
                    else:
                        bad += 1
                if bad >= self.patience or batches >= self.max_batches:
                    break
            if bad >= self.patience or batches >= self.max_batches:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self._net = net
        self._weights = {k: v.detach().numpy().astype(np.float64)
                         for k, v in net.state_dict().items()}

    def _targets(self, values: FloatArray, origins: IntArray) -> np.ndarray[Any, Any]:
        assert self._scale is not None
        idx = origins[:, None] + np.arange(self.horizon)[None, :]
        z = (values[idx] / self._scale).transpose(0, 2, 1).reshape(-1, self.horizon)
        return np.asarray(z, dtype=np.float32)

    def _predict_norm(self, net: Any, seq: np.ndarray[Any, Any],
                      flag: np.ndarray[Any, Any]) -> FloatArray:
        import torch  # noqa: PLC0415 (torch is heavy: load only when used)

        outs = []
        with torch.no_grad():
            for b0 in range(0, seq.shape[0], 16384):
                outs.append(net(torch.from_numpy(seq[b0:b0 + 16384]),
                                torch.from_numpy(flag[b0:b0 + 16384])).numpy())
        return np.asarray(np.concatenate(outs), dtype=np.float64)

    def _loss(self, net: Any, seq: np.ndarray[Any, Any], flag: np.ndarray[Any, Any],
              y: np.ndarray[Any, Any], w: np.ndarray[Any, Any]) -> float:
        net.eval()
        pred = self._predict_norm(net, seq, flag)
        return float((np.abs(pred - y) * w[:, None]).mean())

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        if self._scale is None:
            raise ForecastError("lstm: not fitted")
        if origins.size == 0:
            return np.zeros((0, horizon, values.shape[1]))
        if self._weights is None:  # too little history to train: the naive forecast
            return np.repeat(values[origins - 1][:, None, :], horizon, axis=1)
        n = values.shape[1]
        seq, flag = self._features(values, origins)
        pred = _forward(self._weights, seq, flag).reshape(origins.size, n, self.horizon)
        pred = pred.transpose(0, 2, 1) * self._scale  # (S, H, N)
        if horizon <= self.horizon:
            return pred[:, :horizon]
        extra = np.repeat(pred[:, -1:], horizon - self.horizon, axis=1)
        return np.concatenate([pred, extra], axis=1)


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _forward(w: dict[str, np.ndarray[Any, Any]], seq: np.ndarray[Any, Any],
             flag: np.ndarray[Any, Any]) -> FloatArray:
    """The network of ``_build`` in numpy (float64): one LSTM layer (torch's gate order
    i, f, g, o), then the two linear layers. Forecasting is a few small matrix
    products, so a process that only forecasts needs no torch (and none of its
    threads)."""
    x = seq.astype(np.float64)
    hid = w["lstm.weight_hh_l0"].shape[1]
    h = np.zeros((x.shape[0], hid))
    c = np.zeros_like(h)
    wi, wh = w["lstm.weight_ih_l0"].T, w["lstm.weight_hh_l0"].T
    b = w["lstm.bias_ih_l0"] + w["lstm.bias_hh_l0"]
    for t in range(x.shape[1]):
        g = x[:, t] @ wi + h @ wh + b
        i, f = _sigmoid(g[:, :hid]), _sigmoid(g[:, hid:2 * hid])
        cell, o = np.tanh(g[:, 2 * hid:3 * hid]), _sigmoid(g[:, 3 * hid:])
        c = f * c + i * cell
        h = o * np.tanh(c)
    last = x[:, -1, 0:1]
    feats = np.concatenate([h, flag.astype(np.float64) - last], axis=1)
    mid = np.maximum(feats @ w["hid.weight"].T + w["hid.bias"], 0.0)
    out: FloatArray = last + mid @ w["out.weight"].T + w["out.bias"]
    return out
